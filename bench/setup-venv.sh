#!/usr/bin/env bash
# Create the pinned Python venv used by bench/knn_shapley_vs_pydvl.py.
#
#   bash bench/setup-venv.sh            # -> ${CARGO_TARGET_DIR:-target}/pyvenv-valuation
#   PYTHON=python3.11 bash bench/setup-venv.sh
#
# Prints the venv's python path as its last line. Idempotent: a venv whose
# installed lock matches bench/requirements-valuation.txt is reused as is.
# Debian's system pip refuses system-wide installs (PEP 668), so this always
# uses a venv. Needs PyPI; installs wheels only (nothing is compiled).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
req="$here/requirements-valuation.txt"

target="${CARGO_TARGET_DIR:-target}"
case "$target" in
  /*) ;;
  *) target="$root/$target" ;;
esac
venv="$target/pyvenv-valuation"
py="${PYTHON:-python3}"

if ! "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 9) else 1)' 2>/dev/null; then
  echo "setup-venv: need CPython >= 3.9 as \$PYTHON (got: $py)" >&2
  exit 1
fi

stamp="$venv/.requirements-valuation.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "setup-venv: $venv is up to date" >&2
  echo "$venv/bin/python"
  exit 0
fi

mkdir -p "$target"
if [ ! -x "$venv/bin/python" ]; then
  "$py" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --disable-pip-version-check -q --upgrade "pip>=24"
"$venv/bin/python" -m pip install --disable-pip-version-check -q \
  --only-binary=:all: -r "$req"
"$venv/bin/python" -W ignore -c '
import numpy, sklearn, pydvl
from pydvl.valuation import KNNShapleyValuation, Dataset
print("setup-venv: pydvl", pydvl.__version__, "numpy", numpy.__version__,
      "scikit-learn", sklearn.__version__)
' >&2
echo "$want" > "$stamp"
echo "$venv/bin/python"

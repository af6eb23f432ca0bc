#!/usr/bin/env bash
# Guild (Rust) vs the AT Protocol reference implementation (@atproto/repo), side by side.
#   bash bench/run.sh [N]        N records, default 100000
# Needs target/release/guild (cargo build --release -p guild-node); GUILD_BIN overrides the path.
# BENCH_FAKE_RUST=1 replaces the Rust side by stand-ins made with the reference (tests this harness).
# BENCH_PLAIN=1 generates records without $link/$bytes values.
# Results: bench/out/compare-N.json; exits non-zero if any equality check fails.
set -euo pipefail

N="${1:-100000}"
case "$N" in
  '' | *[!0-9]*) echo "usage: bash bench/run.sh [N]" >&2; exit 2 ;;
esac
BENCH="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(dirname "$BENCH")"
OUT="$BENCH/out"
BIN="${GUILD_BIN:-$ROOT/target/release/guild}"

cd "$BENCH"
if [ ! -d node_modules ]; then
  echo "== npm ci (bench/node_modules missing)"
  npm ci --no-audit --no-fund
fi
mkdir -p "$OUT"

echo "== generating $N records"
node compare.mjs --generate "$N" --out "$OUT"

if [ "${BENCH_FAKE_RUST:-0}" = 1 ]; then
  echo "== BENCH_FAKE_RUST=1: Rust outputs replaced by reference-made stand-ins"
  node compare.mjs --fake-rust "$N" --out "$OUT"
else
  if [ ! -x "$BIN" ]; then
    echo "error: $BIN not found; build it first: cargo build --release -p guild-node" >&2
    exit 2
  fi
  cd "$ROOT"
  if [ ! -f "$OUT/bench.key" ]; then
    "$BIN" key generate --out "$OUT/bench.key"
  fi
  for suffix in "" "-minus7"; do
    echo "== guild repo build records-$N$suffix.jsonl"
    started=$(date +%s%N)
    if ! "$BIN" repo build --records "$OUT/records-$N$suffix.jsonl" --key "$OUT/bench.key" \
        --out "$OUT/repo-$N$suffix.car" --stats 2> "$OUT/rust-build-$N$suffix.stderr"; then
      cat "$OUT/rust-build-$N$suffix.stderr" >&2
      echo "error: guild repo build failed" >&2
      exit 1
    fi
    # The whole process, for the end-to-end ratio.
    echo $(( ($(date +%s%N) - started) / 1000000 )) > "$OUT/rust-wall-$N$suffix.ms"
    tail -n 1 "$OUT/rust-build-$N$suffix.stderr"
  done
  echo "== guild repo inspect"
  "$BIN" repo inspect "$OUT/repo-$N.car" --json --records > "$OUT/inspect-$N.json"
  "$BIN" repo inspect "$OUT/repo-$N-minus7.car" --json > "$OUT/inspect-$N-minus7.json"
  cd "$BENCH"
fi

echo "== reference build and checks"
node compare.mjs --compare "$N" --out "$OUT"

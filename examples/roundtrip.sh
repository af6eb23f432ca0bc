#!/usr/bin/env bash
# A member's first repository, end to end with the offline tools: make an identity, build a
# signed repository from a few works (each validated against Guild's lexicons), inspect it,
# verify it, prove one record and check the proof. Everything goes to a fresh temporary directory.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q -p guild-node
guild=target/release/guild
dir=$(mktemp -d)
step() { printf '\n$ %s\n' "$*"; "$@"; }

step "$guild" key generate --out "$dir/me.key"
step "$guild" repo build --records examples/works.jsonl --key "$dir/me.key" --out "$dir/works.car"
step "$guild" repo inspect "$dir/works.car" --records
step "$guild" repo verify "$dir/works.car"
path=$("$guild" repo inspect "$dir/works.car" --json --records \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["records"][1]["path"])')
step "$guild" repo prove "$dir/works.car" "$path" --out "$dir/proof.car"
step "$guild" repo verify-proof "$dir/proof.car" "$path"
printf '\nFiles are in %s\n' "$dir"

#!/usr/bin/env bash
# buf breaking: the protos must stay wire- and source-compatible with the last landed main.
# That commit is named in protos/BREAKING_BASELINE (a session moves it forward to the main it
# started from). The baseline is extracted with git archive, beside the same well-known deps
# (build/proto-deps, copied by scripts/gen_protos.py), because buf's .git input would not hold them.
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(tr -d '[:space:]' < protos/BREAKING_BASELINE)
git cat-file -e "$base^{commit}" 2>/dev/null || { echo "buf breaking: baseline $base is not in this clone's history" >&2; exit 2; }
against=build/buf-against
rm -rf "$against" && mkdir -p "$against/build"
git archive "$base" buf.yaml protos | tar -x -C "$against"
cp -r build/proto-deps "$against/build/proto-deps"
node_modules/.bin/buf breaking --against "$against"
echo "buf breaking: compatible with ${base:0:12}"

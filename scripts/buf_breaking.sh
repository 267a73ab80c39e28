#!/usr/bin/env bash
# buf breaking: the protos of this tree against those of a git ref (default main), both built as
# images with the googleapis deps gen_protos.py copied to build/proto-deps (not in git, so
# buf's .git# input cannot build the old side by itself).
set -euo pipefail
cd "$(dirname "$0")/.."
ref="${1:-${PENPAY_BUF_AGAINST:-main}}"
if ! git rev-parse --verify --quiet "$ref^{commit}" >/dev/null; then
  echo "buf breaking: no ref $ref here, skipped"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
git archive "$ref" protos buf.yaml | tar -x -C "$work"
mkdir -p "$work/build" && cp -r build/proto-deps "$work/build/"
(cd "$work" && "$OLDPWD/node_modules/.bin/buf" build -o "$work/old.binpb")
node_modules/.bin/buf build -o "$work/new.binpb"
node_modules/.bin/buf breaking "$work/new.binpb" --against "$work/old.binpb"
echo "buf breaking against $ref: compatible"

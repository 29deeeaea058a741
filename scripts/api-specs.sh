#!/usr/bin/env bash
# Optional. The runner needs no manual step: before a batch's first experiment it copies each selected
# API's spec into the batch (BATCH/specifications/<api>/), from apis/<name>/specifications/ when the
# file is there, else out of the API image (`spec_in_image` in apis/<name>/api.toml).
# This script is for an operator who wants the specs in the repository too (to read, diff or commit
# them): it copies each benchmark API's OpenAPI spec out of its built image (llamaresttest/api-<name>,
# which takes it from the RESTgym image) into apis/<name>/specifications/, which the runner then
# prefers. Run after `python -m remote_runner build` on a machine that could pull the RESTgym images.
# Usage: scripts/api-specs.sh [API...]   (default: every API whose spec file is missing)
set -euo pipefail
cd "$(dirname "$0")/.."

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for dir in apis/*/; do
    name=$(basename "$dir")
    [ -f "$dir/specifications/$name-openapi.json" ] || names+=("$name")
  done
fi

status=0
for name in "${names[@]}"; do
  target="apis/$name/specifications/$name-openapi.json"
  image="llamaresttest/api-$name"
  if ! docker image inspect "$image" >/dev/null 2>&1; then
    echo "$name: image $image is not built" >&2
    status=1
    continue
  fi
  tmp="$target.tmp"
  if docker run --rm --entrypoint cat "$image" "/specifications/$name-openapi.json" > "$tmp" \
     && python3 -m json.tool "$tmp" >/dev/null; then
    mv "$tmp" "$target"
    echo "$name: $target"
  else
    rm -f "$tmp"
    echo "$name: no valid /specifications/$name-openapi.json in $image" >&2
    status=1
  fi
done
exit "$status"

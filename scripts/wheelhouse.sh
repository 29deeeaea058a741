#!/usr/bin/env bash
# Downloads, on the host, the Python wheels a tool image installs, into tools/<tool>/wheelhouse/
# (ignored by git), so `docker build` can `pip install --no-index --find-links` where containers
# cannot reach PyPI (see ../shared/ENVIRONMENT.md: pip inside a container fails on TLS here).
# Wheels are chosen for the image's interpreter: CPython 3.11 on manylinux x86_64, which is Debian
# bookworm's python3. Requirements that only exist as source (llama-cpp-python) are downloaded as
# source archives and also built into wheels here (pip's wheel cache makes a second run take
# seconds), so the image compiles nothing when the wheelhouse is filled. tools/<tool>/constraints.txt,
# when present, pins every transitive dependency (pip -c).
# Usage: scripts/wheelhouse.sh TOOL [TOOL...]   (PYTHON=... selects the host interpreter running pip)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
[ $# -ge 1 ] || { echo "usage: $0 TOOL [TOOL...]" >&2; exit 2; }

for tool in "$@"; do
  req="tools/$tool/requirements.txt"
  dest="tools/$tool/wheelhouse"
  [ -f "$req" ] || { echo "no $req" >&2; exit 2; }
  mkdir -p "$dest"
  constraints=()
  [ -f "tools/$tool/constraints.txt" ] && constraints=(-c "tools/$tool/constraints.txt")
  binary_only=()
  source_ok=()
  # Lines marked "# wheelhouse: source" may come as sdists; all others must be binary wheels.
  while IFS= read -r line; do
    spec=${line%%#*}
    spec=$(echo "$spec" | xargs)
    [ -n "$spec" ] || continue
    if [[ "$line" == *"wheelhouse: source"* ]]; then
      source_ok+=("$spec")
    else
      binary_only+=("$spec")
    fi
  done < "$req"
  if [ ${#binary_only[@]} -gt 0 ]; then
    "$python" -m pip download --quiet --dest "$dest" \
      --only-binary=:all: --implementation cp --python-version 3.11 --abi cp311 --abi abi3 --abi none \
      --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux_2_28_x86_64 \
      --platform manylinux_2_5_x86_64 --platform manylinux1_x86_64 --platform any \
      "${constraints[@]}" "${binary_only[@]}"
  fi
  for spec in "${source_ok[@]}"; do
    # The package itself as a source archive, its dependencies as wheels for this interpreter (the
    # host's Python is the image's: Debian bookworm's 3.11). PEP 517 build requirements are not
    # resolved by `pip download`, so the requirements file lists them as ordinary lines.
    name=${spec%%[=<>~!\[ ]*}
    "$python" -m pip download --quiet --dest "$dest" --no-binary "$name" --prefer-binary \
      "${constraints[@]}" "$spec"
    # The same source built into a wheel for the image's interpreter (CPython 3.11, glibc of
    # bookworm: the host's), for CPU without host-specific instructions (LLAMA_NATIVE=OFF, as the
    # Dockerfile builds it).
    CMAKE_ARGS=${CMAKE_ARGS:--DLLAMA_NATIVE=OFF} "$python" -m pip wheel --quiet --no-deps \
      --wheel-dir "$dest" "${constraints[@]}" "$spec"
  done
  echo "$dest: $(find "$dest" -maxdepth 1 \( -name '*.whl' -o -name '*.tar.gz' \) | wc -l) files"
done

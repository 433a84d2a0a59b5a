#!/usr/bin/env bash
# `make verify` companion: the hub chart ships exactly the generated CRDs (crds/ is the source of truth).
#   every crds/*.yaml must be in charts/tenbin/crds/, byte for byte;
#   the chart holds no other CRD (Kopf's ClusterKopfPeering is gone: leader election uses a Lease).
# Fix a difference with:  cp crds/*.yaml charts/tenbin/crds/
set -euo pipefail
cd "$(dirname "$0")/.."

src=crds
dst=charts/tenbin/crds
fail=0

shopt -s nullglob
generated=("$src"/*.yaml)
(( ${#generated[@]} )) || { echo "verify: no CRDs in $src/" >&2; exit 1; }
for f in "${generated[@]}"; do
  name=$(basename "$f")
  if [[ ! -f "$dst/$name" ]]; then
    echo "verify: $dst/$name is missing (the chart would not install $name)" >&2; fail=1
  elif ! cmp -s "$f" "$dst/$name"; then
    echo "verify: $dst/$name differs from $f:" >&2
    diff -u "$f" "$dst/$name" | head -20 >&2 || true
    fail=1
  fi
done
for f in "$dst"/*; do
  name=$(basename "$f")
  [[ -f "$src/$name" ]] && continue
  echo "verify: $dst/$name is not in $src/ (a CRD the models no longer generate?)" >&2; fail=1
done

if (( fail )); then
  echo "verify: the chart's CRDs are out of date; run: cp crds/*.yaml $dst/" >&2
  exit 1
fi
echo "verify: $dst matches $src (${#generated[@]} CRDs)"

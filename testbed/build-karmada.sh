#!/usr/bin/env bash
# Build and cache the Karmada control-plane binaries for the Tenbin testbed (`make testbed-karmada`).
#
#   karmada-controller-manager, karmada-scheduler, karmada-aggregated-apiserver, karmada-webhook
#   (github.com/karmada-io/karmada/cmd/..., built inside the wrapper module testbed/karmada/go.mod)
#   crds/ : the Karmada CRDs, copied from the same module's charts/karmada/_crds
#
# The karmada-apiserver is the testbed's own kube-apiserver (testbed/build.sh). The Karmada version is pinned
# in operator/tenbin/testbed/karmada.py (KARMADA_VERSION), which also runs these binaries.
# Binaries go to $TENBIN_CACHE (default ~/.cache/tenbin)/bin-karmada-<v>/, outside the repo.
# A second run with the same pin is instant. Progress is printed during the long first build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pinfile="$here/../operator/tenbin/testbed/karmada.py"

die() { echo "testbed-karmada: error: $*" >&2; exit 1; }

KARMADA_VERSION=$(sed -n 's/^KARMADA_VERSION = "\(v[0-9][^"]*\)"$/\1/p' "$pinfile")
[[ -n "$KARMADA_VERSION" ]] || die "no KARMADA_VERSION = \"vX.Y.Z\" line in $pinfile"
module=github.com/karmada-io/karmada

command -v go >/dev/null 2>&1 || die "the Go toolchain ('go') is not on PATH; install Go >= 1.26 and run 'make testbed-karmada' again"
grep -Eq "^[[:space:]]*${module} ${KARMADA_VERSION}( // indirect)?$" "$here/karmada/go.mod" \
  || die "testbed/karmada/go.mod does not require '${module} ${KARMADA_VERSION}' as $pinfile pins it; make them agree"

cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
bindir="$cache/bin-karmada-${KARMADA_VERSION}"
stamp="$bindir/.complete"
cmds=(controller-manager scheduler aggregated-apiserver webhook)

complete() {
  [[ -f "$stamp" && -d "$bindir/crds/bases" ]] || return 1
  local c
  for c in "${cmds[@]}"; do [[ -s "$bindir/karmada-$c" ]] || return 1; done
}
if complete; then
  echo "testbed-karmada: up to date in $bindir"
  exit 0
fi

mkdir -p "$bindir"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"
start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }

progress() {  # 'go build -v' prints one package path per line: count them, show everything else
  local label=$1 n=0 line
  while IFS= read -r line; do
    if [[ "$line" == *" "* || "$line" == *":"* ]]; then
      echo "  [$label] $line"
    else
      n=$((n+1))
      (( n % 250 == 0 )) && echo "  [$label] compiled $n packages ($(elapsed) elapsed)"
    fi
  done
  echo "  [$label] $n packages compiled ($(elapsed) elapsed)"
}

echo "testbed-karmada: downloading Go modules for ${module}@${KARMADA_VERSION} (testbed/karmada/go.mod) ..."
(cd "$here/karmada" && go mod download) \
  || die "the Go module proxy did not serve the modules in testbed/karmada/go.mod (see above)"
srcdir=$(cd "$here/karmada" && go list -m -f '{{.Dir}}' "$module") || true
[[ -d "$srcdir" ]] || die "could not locate the source of Go module ${module}@${KARMADA_VERSION}"

# /version and the binaries' --version report the pinned version instead of v0.0.0-master.
ldflags="-s -w"
for kv in "gitVersion=${KARMADA_VERSION}" gitCommit=unknown gitTreeState=clean buildDate=1970-01-01T00:00:00Z; do
  ldflags+=" -X ${module}/pkg/version.${kv}"
done

for c in "${cmds[@]}"; do
  out="$bindir/karmada-$c"
  [[ -x "$out" ]] && continue
  echo "testbed-karmada: building karmada-$c from ${module}/cmd/$c ..."
  rm -f "$out.tmp"
  (cd "$here/karmada" && go build -v -trimpath -ldflags "$ldflags" -o "$out.tmp" "${module}/cmd/$c") 2>&1 | progress "karmada-$c"
  [[ -x "$out.tmp" ]] || die "building karmada-$c from Go module ${module}/cmd/$c@${KARMADA_VERSION} failed (see the lines above)"
  mv "$out.tmp" "$out"
done

[[ -d "$srcdir/charts/karmada/_crds/bases" ]] || die "module ${module}@${KARMADA_VERSION} has no charts/karmada/_crds/bases"
rm -rf "$bindir/crds.tmp"
cp -r "$srcdir/charts/karmada/_crds" "$bindir/crds.tmp"
chmod -R u+w "$bindir/crds.tmp"
rm -rf "$bindir/crds"
mv "$bindir/crds.tmp" "$bindir/crds"

"$bindir/karmada-scheduler" version | grep -q "GitVersion:\"${KARMADA_VERSION}\"" \
  || die "karmada-scheduler reports $("$bindir/karmada-scheduler" version), expected ${KARMADA_VERSION}"
touch "$stamp"
echo "testbed-karmada: built ${cmds[*]/#/karmada-} and CRDs in $(elapsed) -> $bindir"

#!/usr/bin/env bash
# Build and cache the real Kubernetes control-plane binaries for the Tenbin testbed (`make testbed`).
#
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes via testbed/k8s/go.mod)
#   etcd                                                              (go.etcd.io/etcd/server/v3, same module)
#   kwok + its upstream default stages                                (sigs.k8s.io/kwok)
#
# Binaries go to $TENBIN_CACHE (default ~/.cache/tenbin)/bin-k8s-<v>-etcd-<v>-kwok-<v>/, outside the repo.
# A second run with the same pins is instant. Progress is printed during the long first build.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
versions="$here/../operator/tenbin/testbed/versions.env"
# shellcheck disable=SC1090
source "$versions"

die() { echo "testbed: error: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "the Go toolchain ('go') is not on PATH; install Go >= 1.26 (kwok ${KWOK_VERSION} needs it) and run 'make testbed' again"
for pin in "k8s.io/kubernetes ${KUBERNETES_VERSION}" "go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"; do
  grep -Eq "^[[:space:]]*${pin}( // indirect)?$" "$here/k8s/go.mod" \
    || die "testbed/k8s/go.mod does not require '${pin}' as $versions pins it; make them agree"
done

cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
bindir="$cache/bin-k8s-${KUBERNETES_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}"
stamp="$bindir/.complete"
want=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok)

complete() {
  [[ -f "$stamp" ]] || return 1
  local b
  for b in "${want[@]}"; do [[ -s "$bindir/$b" ]] || return 1; done
}
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

build() {  # build LABEL OUT PKG LDFLAGS  (inside the wrapper module)
  local label=$1 out=$2 pkg=$3 ldflags=$4
  echo "testbed: building $label from $pkg ..."
  rm -f "$out.tmp"
  (cd "$here/k8s" && go build -v -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg") 2>&1 | progress "$label"
  [[ -x "$out.tmp" ]] || die "building $label from Go module $pkg failed (see the lines above); is the Go module proxy reachable?"
  mv "$out.tmp" "$out"
}

if ! complete; then
echo "testbed: downloading Go modules for Kubernetes ${KUBERNETES_VERSION} and etcd ${ETCD_VERSION} ..."
(cd "$here/k8s" && go mod download) \
  || die "the Go module proxy did not serve the modules in testbed/k8s/go.mod (see above)"

kv=${KUBERNETES_VERSION#v}; major=${kv%%.*}; rest=${kv#*.}; minor=${rest%%.*}
kldflags="-s -w"
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kldflags+=" -X $p.gitVersion=${KUBERNETES_VERSION} -X $p.gitMajor=${major} -X $p.gitMinor=${minor}"
  kldflags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
done

for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [[ -x "$bindir/$b" ]] || build "$b" "$bindir/$b" "k8s.io/kubernetes/cmd/$b" "$kldflags"
done
[[ -x "$bindir/etcd" ]] || build etcd "$bindir/etcd" go.etcd.io/etcd/server/v3 "-s -w"

if [[ ! -x "$bindir/kwok" ]]; then
  echo "testbed: building kwok from sigs.k8s.io/kwok@${KWOK_VERSION} ..."
  GOBIN="$bindir" go install -v -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" 2>&1 | progress kwok
  [[ -x "$bindir/kwok" ]] || die "building kwok from Go module sigs.k8s.io/kwok@${KWOK_VERSION} failed (see above)"
fi

"$bindir/kube-apiserver" --version | grep -q "${KUBERNETES_VERSION}" \
  || die "kube-apiserver reports $("$bindir/kube-apiserver" --version), expected ${KUBERNETES_VERSION}"
touch "$stamp"
echo "testbed: built ${want[*]} in $(elapsed) -> $bindir"
fi

# kwok refuses to start without stages: use upstream's own default ones, as shipped in the module we built.
kwokdir=$(go mod download -json "sigs.k8s.io/kwok@${KWOK_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
[[ -d "$kwokdir" ]] || die "could not locate the source of Go module sigs.k8s.io/kwok@${KWOK_VERSION} for its stages"
# Pods become Ready at once and are deleted at once (fast stages); Job pods complete after 1-5 s, or after
# the delay in their annotation pod-complete.stage.kwok.x-k8s.io/delay (general stage), so that
# "Running" is observable and tests can keep a Job running as long as they need.
stages=(node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml
        pod/fast/pod-ready.yaml pod/general/pod-complete.yaml pod/fast/pod-delete.yaml)
: > "$bindir/kwok-stages.yaml.tmp"
for s in "${stages[@]}"; do
  [[ -f "$kwokdir/kustomize/stage/$s" ]] || die "module sigs.k8s.io/kwok@${KWOK_VERSION} has no stage kustomize/stage/$s"
  { echo "---"; cat "$kwokdir/kustomize/stage/$s"; } >> "$bindir/kwok-stages.yaml.tmp"
done
mv "$bindir/kwok-stages.yaml.tmp" "$bindir/kwok-stages.yaml"

echo "testbed: up to date in $bindir"

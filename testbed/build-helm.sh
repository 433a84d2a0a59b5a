#!/usr/bin/env bash
# Build and cache the real Helm CLI from its Go module, for the chart tests (tests/chart/).
#
#   helm            helm.sh/helm/v4/cmd/helm at the version pinned in testbed/helm/versions.env
#   Argo CD CRDs    the Go module github.com/argoproj/argo-cd/v3 (its manifests/crds/), into the module cache
#
# The binary goes to $TENBIN_CACHE (default ~/.cache/tenbin)/helm-<version>/helm, outside the repo, beside
# the testbed's Kubernetes binaries. A second run with the same pin is instant. No release-site download:
# only the Go module proxy (and its checksum database) is used.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck disable=SC1091
source "$here/helm/versions.env"

die() { echo "build-helm: error: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || die "the Go toolchain ('go') is not on PATH; install Go >= 1.26 (Helm ${HELM_VERSION} needs it)"

cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
bindir="$cache/helm-${HELM_VERSION}"
argocd() {  # the module cache keeps it: the tests read manifests/crds/ from there (`go mod download -json`)
  local dir
  dir=$(cd / && go mod download -json "github.com/argoproj/argo-cd/v3@${ARGOCD_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
  [[ -f "$dir/manifests/crds/application-crd.yaml" ]] \
    || die "the Go module github.com/argoproj/argo-cd/v3@${ARGOCD_VERSION} did not give manifests/crds/ (is the Go module proxy reachable?)"
  echo "build-helm: Argo CD ${ARGOCD_VERSION} CRDs in $dir/manifests/crds"
}

if [[ -x "$bindir/helm" && -f "$bindir/.complete" ]]; then
  echo "build-helm: up to date: $bindir/helm"
  argocd
  exit 0
fi

mkdir -p "$bindir"
start=$(date +%s)
echo "build-helm: building helm ${HELM_VERSION} from the Go module helm.sh/helm/v4 (a few minutes on 2 cores, once) ..."
tmp=$(mktemp -d "$bindir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# The same version stamp upstream's Makefile sets, so `helm version` does not say just "v4.3".
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:--buildvcs=false}" \
  go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v4/internal/version.gitTreeState=clean" \
  "helm.sh/helm/v4/cmd/helm@${HELM_VERSION}" \
  || die "building helm from Go module helm.sh/helm/v4@${HELM_VERSION} failed (see above); is the Go module proxy reachable?"
"$tmp/helm" version --short | grep -q "^${HELM_VERSION}" \
  || die "the built helm reports '$("$tmp/helm" version --short)', expected ${HELM_VERSION}"
mv "$tmp/helm" "$bindir/helm"
touch "$bindir/.complete"
echo "build-helm: built helm ${HELM_VERSION} in $(( $(date +%s) - start ))s -> $bindir/helm"
argocd

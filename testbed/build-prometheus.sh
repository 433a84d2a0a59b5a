#!/usr/bin/env bash
# Build and cache a real Prometheus server from its Go module, for the telemetry tests (tests/telemetry/).
#
#   prometheus   github.com/prometheus/prometheus/cmd/prometheus at the module version pinned in
#                testbed/prometheus/versions.env (Prometheus v3.X.Y is module version v0.3XX.Y)
#
# The binary goes to $TENBIN_CACHE (default ~/.cache/tenbin)/prometheus-<version>/prometheus, beside the
# testbed's other binaries. A second run with the same pin is instant. Only the Go module proxy (and its
# checksum database) is used. Built as upstream's .promu.yml builds it (static, version stamped through
# github.com/prometheus/common/version) with two differences: no `builtinassets` (the web UI is a Node build
# the module does not ship; the tests use the HTTP API only) and upstream's `remove_all_sd` tag (keeps the
# static, file and HTTP service discovery the tests use; leaves out the cloud SDKs, most of a cold build).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
pins="$here/prometheus/versions.env"
# shellcheck disable=SC1091
source "$pins"

die() { echo "build-prometheus: error: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 \
  || die "the Go toolchain ('go') is not on PATH; install Go >= 1.26 (Prometheus ${PROMETHEUS_VERSION} needs it)"
[[ -n "${PROMETHEUS_VERSION:-}" && -n "${PROMETHEUS_MODULE_VERSION:-}" ]] \
  || die "$pins must set PROMETHEUS_VERSION and PROMETHEUS_MODULE_VERSION"

module=github.com/prometheus/prometheus
cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
bindir="$cache/prometheus-${PROMETHEUS_VERSION}"

if [[ -x "$bindir/prometheus" && -f "$bindir/.complete" ]]; then
  echo "build-prometheus: up to date: $bindir/prometheus"
  exit 0
fi

start=$(date +%s)
elapsed() { echo "$(( $(date +%s) - start ))s"; }
echo "build-prometheus: downloading Go module ${module}@${PROMETHEUS_MODULE_VERSION} ..."
# `go mod download -json` prints the module's directory in the module cache (`go env GOMODCACHE`).
info=$(cd / && go mod download -json "${module}@${PROMETHEUS_MODULE_VERSION}" 2>&1) || true
src=$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p' <<<"$info")
[[ -n "$src" && -f "$src/VERSION" ]] || die "the Go module proxy did not serve ${module}@${PROMETHEUS_MODULE_VERSION}:
$(sed -n 's/^[[:space:]]*"Error": "\(.*\)"$/\1/p' <<<"$info" | sed 's/\\n\\t/ /g')"
[[ "$(cat "$src/VERSION")" == "${PROMETHEUS_VERSION#v}" ]] \
  || die "${module}@${PROMETHEUS_MODULE_VERSION} is Prometheus $(cat "$src/VERSION"), but $pins says ${PROMETHEUS_VERSION}; make them agree"

progress() {  # 'go install -v' prints one package path per line: count them, show everything else
  local n=0 line
  while IFS= read -r line; do
    if [[ "$line" == *" "* || "$line" == *":"* ]]; then
      echo "  [prometheus] $line"
    else
      n=$((n+1))
      (( n % 200 == 0 )) && echo "  [prometheus] compiled $n packages ($(elapsed) elapsed)"
    fi
  done
  echo "  [prometheus] $n packages compiled ($(elapsed) elapsed)"
}

mkdir -p "$bindir"
tmp=$(mktemp -d "$bindir/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "build-prometheus: building prometheus ${PROMETHEUS_VERSION} from ${module}/cmd/prometheus (a few minutes on 2 cores, once) ..."
# The ldflags upstream's promu sets. The module carries no git revision, so the module version stands in.
vpkg=github.com/prometheus/common/version
ldflags="-s -w -X ${vpkg}.Version=${PROMETHEUS_VERSION#v} -X ${vpkg}.Revision=${PROMETHEUS_MODULE_VERSION}"
ldflags+=" -X ${vpkg}.Branch=HEAD -X ${vpkg}.BuildUser=tenbin-testbed -X ${vpkg}.BuildDate=$(date -u +%Y%m%d-%H:%M:%S)"
CGO_ENABLED=0 GOBIN="$tmp" GOFLAGS="${GOFLAGS:--buildvcs=false}" \
  go install -v -trimpath -tags netgo,remove_all_sd -ldflags "$ldflags" \
  "${module}/cmd/prometheus@${PROMETHEUS_MODULE_VERSION}" 2>&1 | progress \
  || die "building prometheus from Go module ${module}@${PROMETHEUS_MODULE_VERSION} failed (see the lines above); is the Go module proxy reachable?"
[[ -x "$tmp/prometheus" ]] || die "go install left no prometheus binary in $tmp"
reported=$("$tmp/prometheus" --version 2>&1 | head -1)
[[ "$reported" == "prometheus, version ${PROMETHEUS_VERSION#v} "* ]] \
  || die "the built prometheus reports '$reported', expected version ${PROMETHEUS_VERSION#v}"
mv "$tmp/prometheus" "$bindir/prometheus"
touch "$bindir/.complete"
echo "build-prometheus: built prometheus ${PROMETHEUS_VERSION} in $(elapsed) -> $bindir/prometheus"

#!/usr/bin/env bash
# Fetch and cache the tools `make image` and tests/image use, from Debian's packages (no Docker daemon):
#
#   mmdebstrap   builds the image's base (Debian with python3 only) from Debian's archive
#   umoci        writes and reads OCI image layouts (layers, config, manifest, annotations)
#   runc         the OCI runtime tests/image runs the image's entrypoint with
#
# `apt-get download` + `dpkg-deb -x` into $TENBIN_CACHE (default ~/.cache/tenbin)/image-tools-<versions>/:
# nothing is installed on the machine. A second run with the same candidate versions is instant.
set -euo pipefail

die() { echo "build-image-tools: error: $*" >&2; exit 1; }
command -v apt-get >/dev/null 2>&1 || die "apt-get is not on PATH: the image is built from Debian's packages, on a Debian machine"
command -v dpkg-deb >/dev/null 2>&1 || die "dpkg-deb is not on PATH"

pkgs=(mmdebstrap umoci runc)
candidate() { apt-cache policy "$1" 2>/dev/null | sed -n 's/^[[:space:]]*Candidate: //p'; }
versions=()
for p in "${pkgs[@]}"; do
  v=$(candidate "$p")
  if [[ -z "$v" || "$v" == "(none)" ]]; then
    echo "build-image-tools: apt has no candidate for $p; running apt-get update ..."
    apt-get update -qq || die "apt-get update failed (is Debian's archive reachable?)"
    v=$(candidate "$p")
    [[ -n "$v" && "$v" != "(none)" ]] || die "Debian's archive offers no package $p"
  fi
  versions+=("$p=$v")
done

cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
key=$(printf '%s\n' "${versions[@]}" | sha256sum | cut -c1-12)
dir="$cache/image-tools-$key"
if [[ -f "$dir/.complete" ]]; then
  echo "build-image-tools: up to date: $dir (${versions[*]})"
  exit 0
fi
mkdir -p "$cache"
tmp=$(mktemp -d "$cache/.image-tools.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"  # apt's _apt user writes the downloads
(cd "$tmp" && apt-get download -qq "${versions[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
for p in "${pkgs[@]}"; do
  deb=$(ls "$tmp"/"${p}"_*.deb 2>/dev/null | head -1)
  [[ -n "$deb" ]] || die "apt-get download $p gave no .deb"
  dpkg-deb -x "$deb" "$tmp/root"
done
for bin in usr/bin/mmdebstrap usr/bin/mmtarfilter usr/bin/umoci usr/sbin/runc; do
  [[ -x "$tmp/root/$bin" ]] || die "$bin missing from the extracted packages"
done
"$tmp/root/usr/bin/umoci" --version >/dev/null || die "umoci does not run here"
"$tmp/root/usr/sbin/runc" --version >/dev/null || die "runc does not run here"
mkdir -p "$tmp/bin"
ln -s ../root/usr/bin/mmdebstrap ../root/usr/bin/mmtarfilter ../root/usr/bin/umoci ../root/usr/sbin/runc "$tmp/bin/"
printf '%s\n' "${versions[@]}" > "$tmp/versions"
rm -f "$tmp"/*.deb
touch "$tmp/.complete"
rm -rf "$dir"
mv "$tmp" "$dir"
trap - EXIT
ln -sfn "image-tools-$key" "$cache/image-tools"
echo "build-image-tools: ${versions[*]} in $dir"

#!/usr/bin/env bash
# `make image`: Tenbin's OCI image, built without a Docker daemon from this machine's registries only.
#
#   1. base      mmdebstrap: Debian bookworm's Essential packages, python3 and libstdc++6 (numpy's), nothing else (no apt, no shell
#                tools beyond Essential), plus user tenbin (10001:10001). Cached by its inputs.
#   2. python    pip installs requirements.lock (pinned, hashed: --require-hashes, wheels only) and Tenbin's
#                own wheel into /opt/tenbin/lib; Debian's python3 compiles the bytecode (the root filesystem
#                is read-only at run time).
#   3. image     umoci writes an OCI image layout: one layer, the config (user 10001, entrypoint
#                `python3 -m tenbin`, cmd `run`, workdir /tmp, ports 8080/8081) and OCI annotations
#                (source, version, revision, created).
#
# Out: build/image/tenbin-<version>.oci.tar, an OCI layout tarball tagged with the chart's appVersion
# (`skopeo copy oci-archive:build/image/tenbin-0.1.0.oci.tar docker://<registry>/tenbin:0.1.0` pushes it).
# The Dockerfile builds the same thing for those with Docker. Needs root (mmdebstrap's root mode, file
# ownership in the layer) and the tools from testbed/build-image-tools.sh.
#
#   bash image/build.sh [OUT_DIR]
set -euo pipefail

die() { echo "image: error: $*" >&2; exit 1; }
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/build/image}" && cd "${1:-$root/build/image}" && pwd)
cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
tools="$cache/image-tools/bin"
py=${PYTHON:-$root/.venv/bin/python}
suite=bookworm
uid=10001

[[ $(id -u) == 0 ]] || die "run as root: mmdebstrap's root mode and the layer's file ownership need it"
[[ -x "$tools/umoci" && -x "$tools/mmdebstrap" ]] || die "no image tools in $tools: run bash testbed/build-image-tools.sh"
[[ -x "$py" ]] || die "no Python at $py: run make venv"
export PATH="$tools:$PATH"

version=$(sed -n 's/^appVersion: "\(.*\)"$/\1/p' "$root/charts/tenbin/Chart.yaml")
pyversion=$("$py" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$root/pyproject.toml")
[[ -n "$version" && "$version" == "$pyversion" ]] \
  || die "charts/tenbin/Chart.yaml appVersion ($version) and pyproject.toml version ($pyversion) differ"
"$py" -c 'import sys, sysconfig; assert sys.version_info[:2] == (3, 11) and sysconfig.get_platform() == "linux-x86_64"' \
  || die "$py is not CPython 3.11 on linux-x86_64: the wheels it picks must fit bookworm's python3.11"
revision=$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)
if [[ $revision != unknown ]] && [[ -n $(git -C "$root" status --porcelain -- operator pyproject.toml requirements.lock image 2>/dev/null) ]]; then
  revision="$revision-dirty"
fi
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)
start=$(date +%s)

# ---- 1. the base, cached by what goes into it ---------------------------------------------------------------
hook="echo 'tenbin:x:$uid:$uid:tenbin:/nonexistent:/usr/sbin/nologin' >> \"\$1/etc/passwd\"; echo 'tenbin:x:$uid:' >> \"\$1/etc/group\""
base_key=$(printf '%s\n' "$suite" python3,libstdc++6 "$hook" "$(cat "$cache/image-tools/versions")" | sha256sum | cut -c1-12)
base="$cache/image-base-$base_key.tar"
if [[ ! -f "$base" ]]; then
  echo "image: building the base (Debian $suite, python3) with mmdebstrap, once ..."
  mmdebstrap --quiet --mode=root --format=tar --variant=essential --include=python3,libstdc++6 \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
    --customize-hook="$hook" "$suite" "$base.part" || die "mmdebstrap failed (is Debian's archive reachable?)"
  mv "$base.part" "$base"
fi

work=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
bundle="$work/bundle"

# ---- 2. python: the locked dependencies and Tenbin itself ---------------------------------------------------
umoci init --layout "$layout"
umoci new --image "$layout:$version"
umoci unpack --image "$layout:$version" "$bundle" >/dev/null
tar -C "$bundle/rootfs" -xf "$base"
lib="$bundle/rootfs/opt/tenbin/lib"
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
"$py" -m pip install --quiet --no-deps --require-hashes --only-binary=:all: --no-compile --target "$lib" \
  -r "$root/requirements.lock" || die "pip could not install requirements.lock (run make lock after changing pyproject.toml)"
rm -rf "$lib/bin"  # console scripts carry this machine's interpreter path; the entrypoint is `python3 -m tenbin`
"$py" -m pip wheel --quiet --no-deps --wheel-dir "$work/wheel" "$root" >/dev/null
"$py" -m pip install --quiet --no-deps --no-compile --target "$lib" "$work"/wheel/tenbin-*.whl
rm -rf "$lib/bin"
chroot "$bundle/rootfs" /usr/bin/python3 -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/tenbin/lib \
  >/dev/null || die "bookworm's python3 could not compile /opt/tenbin/lib"
chroot "$bundle/rootfs" /usr/bin/env PYTHONPATH=/opt/tenbin/lib /usr/bin/python3 -c 'import tenbin.cli, tenbin.runner' \
  || die "the image's python3 cannot import tenbin"

# ---- 3. the image -------------------------------------------------------------------------------------------
umoci repack --image "$layout:$version" --history.created_by "image/build.sh (mmdebstrap $suite + requirements.lock)" \
  "$bundle"
source_url="https://github.com/tenbin/tenbin"
cfg=(--config.user "$uid:$uid" --config.workingdir /tmp
     --config.entrypoint /usr/bin/python3 --config.entrypoint -m --config.entrypoint tenbin --config.cmd run
     --config.env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
     --config.env PYTHONPATH=/opt/tenbin/lib --config.env PYTHONDONTWRITEBYTECODE=1 --config.env PYTHONUNBUFFERED=1
     --config.exposedports 8080/tcp --config.exposedports 8081/tcp --created "$created")
for kv in "org.opencontainers.image.title=tenbin" \
          "org.opencontainers.image.description=Tenbin: places GPU work across a hybrid fleet by availability, data residency and price" \
          "org.opencontainers.image.licenses=Apache-2.0" "org.opencontainers.image.source=$source_url" \
          "org.opencontainers.image.version=$version" "org.opencontainers.image.revision=$revision" \
          "org.opencontainers.image.created=$created" "org.opencontainers.image.base.name=debian:$suite"; do
  cfg+=(--config.label "$kv" --manifest.annotation "$kv")
done
umoci config --image "$layout:$version" "${cfg[@]}"
umoci gc --layout "$layout"

tarball="$out/tenbin-$version.oci.tar"
tar -C "$layout" --sort=name --owner=0 --group=0 --numeric-owner -cf "$tarball.part" .
mv "$tarball.part" "$tarball"
size=$(du -m "$tarball" | cut -f1)
echo "image: $tarball (tenbin:$version, revision $revision, ${size} MB, $(( $(date +%s) - start )) s)"

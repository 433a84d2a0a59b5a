#!/usr/bin/env bash
# Build and cache the AI workload controllers of the Tenbin testbed (`make testbed`), each from its own
# Go module inside a wrapper module (testbed/addons/<name>/go.mod), with the CRDs and webhook manifests of
# the same module version:
#
#   jobset             sigs.k8s.io/jobset                                  JobSet
#   lws                sigs.k8s.io/lws                                     LeaderWorkerSet
#   kuberay            github.com/ray-project/kuberay/ray-operator         RayJob (RayCluster)
#   training-operator  github.com/kubeflow/training-operator               PyTorchJob (Kubeflow v1)
#   volcano            volcano.sh/apis (CRDs only, by controller-gen)      Job (batch.volcano.sh/v1alpha1)
#
# Versions are pinned in testbed/addons/versions.env. Output: $TENBIN_CACHE (default ~/.cache/tenbin)/
# addon-<name>-<version>/{<name>, crds/, webhooks/}, outside the repo. A second run is instant.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "testbed-addons: error: $*" >&2; exit 1; }
command -v go >/dev/null 2>&1 || die "the Go toolchain ('go') is not on PATH; install Go >= 1.26 and run 'make testbed' again"
# shellcheck source=/dev/null
source "$here/addons/versions.env"
cache=${TENBIN_CACHE:-$HOME/.cache/tenbin}
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:--buildvcs=false}"

# name | module | main package | CRD dir in the module | webhook manifests in the module (or -) | pin
addons=(
  "jobset|sigs.k8s.io/jobset|sigs.k8s.io/jobset|config/components/crd/bases|config/components/webhook/manifests.yaml|$JOBSET_VERSION"
  "lws|sigs.k8s.io/lws|sigs.k8s.io/lws/cmd|config/crd/bases|config/webhook/manifests.yaml|$LWS_VERSION"
  "kuberay|github.com/ray-project/kuberay/ray-operator|github.com/ray-project/kuberay/ray-operator|config/crd/bases|-|$KUBERAY_VERSION"
  "training-operator|github.com/kubeflow/training-operator|github.com/kubeflow/training-operator/cmd/training-operator.v1|manifests/base/crds|-|$TRAINING_OPERATOR_VERSION"
)

for row in "${addons[@]}"; do
  IFS='|' read -r name module pkg crds hooks version <<<"$row"
  out="$cache/addon-$name-$version"
  if [[ -f "$out/.complete" ]]; then
    echo "testbed-addons: $name $version up to date in $out"
    continue
  fi
  wrapper="$here/addons/$name"
  grep -Eq "^[[:space:]]*${module} ${version}( // indirect)?$" "$wrapper/go.mod" \
    || die "$wrapper/go.mod does not require '${module} ${version}' as testbed/addons/versions.env pins it; make them agree"
  start=$(date +%s)
  echo "testbed-addons: building $name $version from $pkg ..."
  (cd "$wrapper" && go mod download) || die "the Go module proxy did not serve the modules of $wrapper/go.mod"
  src=$(cd "$wrapper" && go list -m -f '{{.Dir}}' "$module")
  [[ -d "$src/$crds" ]] || die "module ${module}@${version} has no $crds"
  mkdir -p "$out"
  rm -f "$out/$name.tmp"
  (cd "$wrapper" && go build -trimpath -ldflags "-s -w" -o "$out/$name.tmp" "$pkg") \
    || die "building $name from Go module ${pkg}@${version} failed (see above)"
  mv "$out/$name.tmp" "$out/$name"
  rm -rf "$out/crds" "$out/webhooks"
  mkdir -p "$out/crds" "$out/webhooks"
  for f in "$src/$crds"/*.yaml; do  # the CRDs only (not a kustomization.yaml beside them)
    grep -q "^kind: CustomResourceDefinition" "$f" && cp "$f" "$out/crds/"
  done
  [[ "$hooks" == "-" ]] || cp "$src/$hooks" "$out/webhooks/"
  chmod -R u+w "$out/crds" "$out/webhooks"
  touch "$out/.complete"
  echo "testbed-addons: built $name in $(( $(date +%s) - start ))s -> $out"
done

# Volcano: its Job CRD only, generated from the API types of volcano.sh/apis by controller-gen, as Volcano's own
# build does (its controller module, volcano.sh/volcano, is refused by the Go module proxy: no controller runs;
# the tests write the status it would). A kind Tenbin knows only from a PlacementPolicy's spec.workloadKinds.
# generateEmbeddedObjectMeta: the task templates' labels and annotations are kept, not pruned (without it the
# apiserver drops them, and with them the labels that attribute the pods).
out="$cache/addon-volcano-$VOLCANO_APIS_VERSION"
if [[ -f "$out/.complete" ]]; then
  echo "testbed-addons: volcano $VOLCANO_APIS_VERSION (CRDs) up to date in $out"
else
  wrapper="$here/addons/volcano"
  for pin in "volcano.sh/apis $VOLCANO_APIS_VERSION" "sigs.k8s.io/controller-tools $CONTROLLER_TOOLS_VERSION"; do
    grep -Eq "^[[:space:]]*(require )?${pin}( // indirect)?$" "$wrapper/go.mod" \
      || die "$wrapper/go.mod does not require '$pin' as testbed/addons/versions.env pins it; make them agree"
  done
  start=$(date +%s)
  echo "testbed-addons: generating Volcano's Job CRD from volcano.sh/apis $VOLCANO_APIS_VERSION ..."
  (cd "$wrapper" && go mod download) || die "the Go module proxy did not serve the modules of $wrapper/go.mod"
  mkdir -p "$out/gen"
  (cd "$wrapper" && go build -trimpath -ldflags "-s -w" -o "$out/controller-gen" sigs.k8s.io/controller-tools/cmd/controller-gen) \
    || die "building controller-gen $CONTROLLER_TOOLS_VERSION failed (see above)"
  (cd "$wrapper" && "$out/controller-gen" crd:crdVersions=v1,maxDescLen=0,generateEmbeddedObjectMeta=true \
      paths=volcano.sh/apis/pkg/apis/batch/v1alpha1 output:crd:dir="$out/gen") \
    || die "controller-gen could not generate the CRDs of volcano.sh/apis/pkg/apis/batch/v1alpha1"
  rm -rf "$out/crds" && mkdir -p "$out/crds"
  cp "$out/gen/batch.volcano.sh_jobs.yaml" "$out/crds/" || die "controller-gen wrote no batch.volcano.sh_jobs.yaml"
  rm -rf "$out/gen"
  touch "$out/.complete"
  echo "testbed-addons: generated Volcano's Job CRD in $(( $(date +%s) - start ))s -> $out"
fi

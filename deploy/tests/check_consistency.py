"""Check deploy/ against the server itself: flags and their variables, routes, metric names.

    python deploy/tests/check_consistency.py --rendered DIR [--promql-out FILE]

Reads the server's truth from the code (`classifyd serve --help`, server/routes.py,
engine/metrics.py) and checks, in every rendered manifest of DIR (helm template and kubectl
kustomize output), the Dockerfile and .dockerignore, the chart's values schema, the
single-host nginx template, the Prometheus rules, the prometheus-adapter values and the
Grafana dashboard:

- every CLASSIFYD_* variable is a real flag's; host, port and probes agree;
- probes use /health (startup, liveness) and /ready (readiness), metrics /metrics;
- terminationGracePeriodSeconds covers the preStop pause plus --shutdown-timeout;
- Service, PodDisruptionBudget, ServiceMonitor and spread selectors select the pods;
  autoscalers target the Deployment;
- every metric name in a query is one the server exports, every label one it has (or one
  Prometheus adds), every phase one it records;
- the dashboard's structure (ids, grid, variables, the panels the issue asks for).

With --promql-out, writes every dashboard and autoscaler query, variables filled, as a rule
file for `promtool check rules` to parse.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import yaml

DEPLOY = Path(__file__).resolve().parent.parent
ROOT = DEPLOY.parent
sys.path.insert(0, str(ROOT))

# Flags the chart sets from values of their own, and one it must never set.
CHART_OWN_FLAGS = {
    "host", "port", "model", "revision", "download-dir", "shutdown-timeout", "api-key",
    "num-threads",
}  # fmt: skip
NOT_FOR_DEPLOYMENT = {"fault-hook"}  # a chaos-test hook
# Labels Prometheus (or a ServiceMonitor) adds to every scraped series.
TARGET_LABELS = {"job", "instance", "namespace", "service", "pod", "container", "endpoint"}
PHASES = {"tokenize", "queue", "inference", "total"}
# What the issue asks the dashboard to show, by words in panel titles.
REQUIRED_PANELS = {
    "throughput": "throughput",
    "latency by phase": "latency by phase",
    "queue depth": "queue depth",
    "batch size": "batch size",
    "padding waste": "padding",
    "errors by reason": "errors by reason",
}
GRAFANA_BUILTINS = {"__rate_interval", "__interval", "__range", "__interval_ms"}


class Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []
        self.passed = 0

    def expect(self, ok: bool, message: str) -> None:
        if ok:
            self.passed += 1
        else:
            self.failed.append(message)


# -- the server's truth ----------------------------------------------------------------------


def server_flags() -> dict[str, str]:
    """{flag name: its CLASSIFYD_* variable}, from `classifyd serve --help`."""
    env = {**os.environ, "COLUMNS": "100000"}
    out = subprocess.run(
        [sys.executable, "-m", "cli", "serve", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flags = {}
    # One block per option, each starting with its flag, its help ending "env CLASSIFYD_X)".
    for block in re.split(r"\n(?=  -)", out.split("options:", 1)[-1]):
        flag = re.match(r"\s*--([a-z0-9-]+)", block)
        env_name = re.search(r"\benv (CLASSIFYD_[A-Z0-9_]+)\)", block)
        if flag and env_name:
            flags[flag.group(1)] = env_name.group(1)
    if len(flags) < 10:
        raise SystemExit(f"could not read the flags from `classifyd serve --help`:\n{out}")
    return flags


def server_routes() -> dict[str, set[str]]:
    from server.routes import routes

    return {route.path: set(route.methods or ()) for route in routes}


def server_metrics() -> dict[str, tuple[str, set[str]]]:
    """{exported series name: (family, label names)}, suffixes included."""
    from prometheus_client.metrics import MetricWrapperBase

    from engine.metrics import EngineMetrics
    from server.metrics import ServerMetrics

    engine = EngineMetrics("consistency-check")
    engine.size_prompts(512)  # the series sized by the model's length, as a started engine has
    served = ServerMetrics(engine.registry)
    out: dict[str, tuple[str, set[str]]] = {}
    for value in [*vars(engine).values(), *vars(served).values()]:
        if not isinstance(value, MetricWrapperBase):
            continue
        name, kind, labels = value._name, value._type, set(value._labelnames)
        if kind == "counter":
            out[f"{name}_total"] = (name, labels)
        elif kind == "histogram":
            out[f"{name}_bucket"] = (name, labels | {"le"})
            out[f"{name}_sum"] = (name, labels)
            out[f"{name}_count"] = (name, labels)
        else:
            out[name] = (name, labels)
    return out


# -- PromQL ------------------------------------------------------------------------------------

_SERIES = re.compile(r"(?<![\w:])((?:classifyd_|vllm:)[A-Za-z0-9_:]*)\s*(\{[^}]*\})?")
_MATCHER = re.compile(r'([A-Za-z_]\w*)\s*(=~|!=|!~|=)\s*"([^"]*)"')


def check_promql(
    checks: Checks, where: str, expr: str, metrics: dict[str, tuple[str, set[str]]]
) -> None:
    for name, selector in _SERIES.findall(expr):
        # Recorded series (level:metric:operations) are the rules' own names.
        if name.count(":") >= 2 or (":" in name and not name.startswith("vllm:")):
            continue
        checks.expect(name in metrics, f"{where}: {name} is not a metric the server exports")
        if name not in metrics or not selector:
            continue
        labels = metrics[name][1]
        for label, _, value in _MATCHER.findall(selector):
            checks.expect(
                label in labels or label in TARGET_LABELS,
                f"{where}: {name} has no label {label!r} (it has {sorted(labels)})",
            )
            if label == "phase" and "$" not in value:
                checks.expect(set(value.split("|")) <= PHASES, f"{where}: unknown phase {value!r}")


def dashboard_exprs(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (f"{panel['title']} [{t['refId']}]", t["expr"])
        for panel in dashboard["panels"]
        for t in panel.get("targets", [])
    ]


def fill_variables(expr: str) -> str:
    values = {"namespace": ".*", "job": "classifyd", "instance": ".*", "datasource": "x"}
    values.update({b: "5m" for b in GRAFANA_BUILTINS})
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values[m.group(1) or m.group(2)], expr)


# -- the parts of deploy/ ----------------------------------------------------------------------


def check_deployment(
    checks: Checks,
    where: str,
    dep: dict[str, Any],
    flags: dict[str, str],
    routes: dict[str, set[str]],
) -> None:
    pod = dep["spec"]["template"]
    pod_labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    checks.expect(
        _selects(dep["spec"]["selector"]["matchLabels"], pod_labels),
        f"{where}: the Deployment's selector does not select its own pods",
    )
    for tsc in spec.get("topologySpreadConstraints", []):
        checks.expect(
            _selects(tsc["labelSelector"]["matchLabels"], pod_labels),
            f"{where}: a topology spread selector does not select the pods",
        )
    (container,) = [c for c in spec["containers"] if c["name"] == "classifyd"]
    env = {e["name"]: e.get("value") for e in container.get("env", [])}
    known = set(flags.values())
    for name in env:
        if name.startswith("CLASSIFYD_"):
            checks.expect(name in known, f"{where}: {name} is not a classifyd serve flag")
    checks.expect(env.get("CLASSIFYD_HOST") == "0.0.0.0", f"{where}: must listen on 0.0.0.0")
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    checks.expect(
        str(ports.get("http")) == env.get("CLASSIFYD_PORT"),
        f"{where}: container port http {ports.get('http')} != CLASSIFYD_PORT "
        f"{env.get('CLASSIFYD_PORT')}",
    )
    checks.expect("CLASSIFYD_MODEL" in env, f"{where}: no CLASSIFYD_MODEL")
    if env.get("CLASSIFYD_NUM_THREADS") is None:
        checks.failed.append(f"{where}: CLASSIFYD_NUM_THREADS unset (the default counts the node)")
    expected_paths = {"startupProbe": "/health", "livenessProbe": "/health"}
    expected_paths["readinessProbe"] = "/ready"
    for probe, path in expected_paths.items():
        get = container.get(probe, {}).get("httpGet", {})
        checks.expect(get.get("path") == path, f"{where}: {probe} must GET {path}")
        checks.expect(get.get("port") in ("http", ports.get("http")), f"{where}: {probe} port")
        checks.expect(
            "GET" in routes.get(get.get("path", ""), set()),
            f"{where}: {probe} path {get.get('path')} is not a GET route",
        )
    # The grace period covers the pause before SIGTERM, the drain after it, and the HTTP
    # server's graceful shutdown, which runs --shutdown-timeout again after a drain that
    # timed out (server/runtime.py: timeout_graceful_shutdown).
    command = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command")
    checks.expect(bool(command) and command[0] == "sleep", f"{where}: preStop must pause (sleep N)")
    pause = float(command[1]) if command else 0.0
    shutdown = float(env.get("CLASSIFYD_SHUTDOWN_TIMEOUT") or 30)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    checks.expect(
        grace >= pause + 2 * shutdown + 5,
        f"{where}: terminationGracePeriodSeconds {grace} < preStop {pause:g} + "
        f"2 × --shutdown-timeout {shutdown:g} + 5",
    )
    mounts = [m["mountPath"] for m in container.get("volumeMounts", [])]
    model = env.get("CLASSIFYD_MODEL") or ""
    uses_pvc = any("persistentVolumeClaim" in v for v in spec.get("volumes", []))
    # A Hub id (model.source=hub) is downloaded, not mounted.
    if uses_pvc and model.startswith("/"):
        checks.expect(
            any(model == m or model.startswith(m.rstrip("/") + "/") for m in mounts),
            f"{where}: the model {model} is not under a mounted volume",
        )


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_manifests(
    checks: Checks,
    path: Path,
    flags: dict[str, str],
    routes: dict[str, set[str]],
    metrics: dict[str, tuple[str, set[str]]],
) -> list[str]:
    """Check one rendered file; return its autoscaling queries."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for doc in docs:
        by_kind.setdefault(doc["kind"], []).append(doc)
    where = path.name
    (dep,) = by_kind["Deployment"]
    check_deployment(checks, where, dep, flags, routes)
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    name = dep["metadata"]["name"]
    (svc,) = by_kind["Service"]
    checks.expect(_selects(svc["spec"]["selector"], pod_labels), f"{where}: Service selector")
    checks.expect(
        all(p["targetPort"] == "http" for p in svc["spec"]["ports"]), f"{where}: Service port"
    )
    for pdb in by_kind.get("PodDisruptionBudget", []):
        checks.expect(
            _selects(pdb["spec"].get("selector", {}).get("matchLabels", {}), pod_labels),
            f"{where}: the PodDisruptionBudget's selector does not select the pods (an empty "
            "one selects every pod of the namespace)",
        )
    for sm in by_kind.get("ServiceMonitor", []):
        checks.expect(
            _selects(sm["spec"]["selector"]["matchLabels"], svc["metadata"].get("labels", {})),
            f"{where}: the ServiceMonitor does not select the Service",
        )
        svc_ports = {p["name"] for p in svc["spec"]["ports"]}
        for endpoint in sm["spec"]["endpoints"]:
            checks.expect(endpoint["port"] in svc_ports, f"{where}: ServiceMonitor port")
            checks.expect(endpoint.get("path") == "/metrics", f"{where}: scrape /metrics")
    queries = []
    for so in by_kind.get("ScaledObject", []):
        checks.expect(so["spec"]["scaleTargetRef"]["name"] == name, f"{where}: ScaledObject target")
        for trigger in so["spec"]["triggers"]:
            query = trigger["metadata"]["query"]
            queries.append(query)
            check_promql(checks, f"{where} ScaledObject", query, metrics)
            checks.expect(
                "classifyd_queue_waiting_sequences" in query
                or "vllm:num_requests_waiting" in query,
                f"{where}: the ScaledObject does not scale on the waiting queue",
            )
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        checks.expect(hpa["spec"]["scaleTargetRef"]["name"] == name, f"{where}: HPA target")
        for metric in hpa["spec"]["metrics"]:
            checks.expect(metric["pods"]["metric"]["name"] in metrics, f"{where}: HPA metric name")
    if "ScaledObject" in by_kind and "HorizontalPodAutoscaler" in by_kind:
        checks.failed.append(f"{where}: a ScaledObject and an HPA would fight over replicas")
    if "ScaledObject" in by_kind or "HorizontalPodAutoscaler" in by_kind:
        checks.expect("replicas" not in dep["spec"], f"{where}: autoscaled, yet replicas is set")
    for rule in by_kind.get("PrometheusRule", []):
        for group in rule["spec"]["groups"]:
            for r in group["rules"]:
                check_promql(checks, f"{where} PrometheusRule", r["expr"], metrics)
    return queries


def check_schema(checks: Checks, flags: dict[str, str]) -> None:
    schema = json.loads((DEPLOY / "helm/classifyd/values.schema.json").read_text())
    keys = set(schema["properties"]["config"]["properties"])
    for key in sorted(keys - set(flags)):
        checks.failed.append(f"values.schema.json: config.{key} is not a classifyd serve flag")
    for key in sorted(set(flags) - keys - CHART_OWN_FLAGS - NOT_FOR_DEPLOYMENT):
        checks.failed.append(
            f"values.schema.json: the flag --{key} is missing from config (add it with its "
            "type, or to CHART_OWN_FLAGS/NOT_FOR_DEPLOYMENT in deploy/tests/check_consistency.py)"
        )
    for key in sorted(keys & CHART_OWN_FLAGS):
        checks.failed.append(f"values.schema.json: config.{key} has a value of its own")
    values = yaml.safe_load((DEPLOY / "helm/classifyd/values.yaml").read_text())
    checks.expect(values["port"] == values["service"]["port"], "values: port != service.port")


def check_dockerfile(checks: Checks, flags: dict[str, str]) -> None:
    text = (DEPLOY / "docker/Dockerfile").read_text()
    # The build copies the context less .dockerignore: nothing pip needs may be ignored.
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    needed = [*project["tool"]["setuptools"]["packages"], "pyproject.toml", "README.md"]
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for name in needed:
        checks.expect(name not in ignored, f".dockerignore drops {name}, which pip needs")
    for name in (".git", ".venv", "tests"):
        checks.expect(name in ignored, f".dockerignore lets {name} into the build context")
    checks.expect(re.search(r"^COPY \. \.$", text, re.M) is not None, "Dockerfile: COPY . .")
    known = set(flags.values())
    for name in re.findall(r"\b(CLASSIFYD_[A-Z0-9_]+)=", text):
        if name != "CLASSIFYD_HOME":  # read by the default-model cache, not a flag
            checks.expect(name in known, f"Dockerfile: {name} is not a classifyd serve flag")
    port = re.search(r"CLASSIFYD_PORT=(\d+)", text)
    checks.expect(bool(port) and f"EXPOSE {port.group(1)}" in text, "Dockerfile: EXPOSE port")
    checks.expect("/health" in text.split("HEALTHCHECK", 1)[-1], "Dockerfile: HEALTHCHECK /health")
    checks.expect(re.search(r"^USER 10001", text, re.M) is not None, "Dockerfile: non-root USER")


def check_nginx(checks: Checks, routes: dict[str, set[str]]) -> None:
    text = (DEPLOY / "single-host/nginx.conf.template").read_text()
    checks.expect(re.search(r"^\s*least_conn;", text, re.M) is not None, "nginx: least_conn")
    m = re.search(r"location ~ \^/\(([^)]*)\)\$ \{(.*?)\}", text, re.S)
    checks.expect(m is not None, "nginx: no location for the model routes")
    if m is None:
        return
    retried = {"/" + p for p in m.group(1).split("|")}
    for path in retried:
        checks.expect(routes.get(path) == {"POST"}, f"nginx: {path} is not a POST model route")
    for path in ("/classify", "/v1/classify", "/invocations"):
        checks.expect(path in retried, f"nginx: {path} is not retried")
    block = m.group(2)
    for word in ("error", "timeout", "http_502", "http_503", "http_429", "non_idempotent"):
        checks.expect(word in block, f"nginx: model routes not retried on {word}")
    rest = text[m.end() :]
    checks.expect("non_idempotent" not in rest, "nginx: non_idempotent outside the model routes")


def check_dashboard(
    checks: Checks, metrics: dict[str, tuple[str, set[str]]]
) -> list[tuple[str, str]]:
    dash = json.loads((DEPLOY / "grafana/classifyd.json").read_text())
    variables = {v["name"] for v in dash["templating"]["list"]}
    checks.expect({"datasource", "job"} <= variables, "dashboard: $datasource and $job variables")
    ids = [p["id"] for p in dash["panels"]]
    checks.expect(len(ids) == len(set(ids)), "dashboard: panel ids are not unique")
    titles = [p["title"] for p in dash["panels"]]
    checks.expect(len(titles) == len(set(titles)), "dashboard: panel titles are not unique")
    cells: set[tuple[int, int]] = set()
    for panel in dash["panels"]:
        grid = panel["gridPos"]
        checks.expect(grid["x"] + grid["w"] <= 24, f"dashboard: {panel['title']} is too wide")
        mine = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        checks.expect(not (mine & cells), f"dashboard: {panel['title']} overlaps another panel")
        cells |= mine
        checks.expect(
            panel.get("datasource", {}).get("uid") == "${datasource}",
            f"dashboard: {panel['title']} does not use $datasource",
        )
        refs = [t["refId"] for t in panel.get("targets", [])]
        checks.expect(bool(refs), f"dashboard: {panel['title']} has no query")
        checks.expect(len(refs) == len(set(refs)), f"dashboard: {panel['title']} refIds repeat")
    for title_words in REQUIRED_PANELS.values():
        checks.expect(
            any(title_words in t.lower() for t in titles), f"dashboard: no {title_words} panel"
        )
    exprs = dashboard_exprs(dash)
    for where, expr in exprs:
        for a, b in re.findall(r"\$\{(\w+)\}|\$(\w+)", expr):
            var = a or b
            checks.expect(
                var in variables or var in GRAFANA_BUILTINS,
                f"dashboard {where}: ${var} is not a dashboard variable",
            )
        check_promql(checks, f"dashboard {where}", expr, metrics)
    return exprs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rendered", type=Path, required=True)
    parser.add_argument("--promql-out", type=Path)
    args = parser.parse_args()

    flags = server_flags()
    routes = server_routes()
    metrics = server_metrics()
    checks = Checks()

    queries: list[tuple[str, str]] = []
    files = sorted(args.rendered.glob("*.yaml"))
    checks.expect(bool(files), f"no rendered manifests in {args.rendered}")
    for path in files:
        for q in check_manifests(checks, path, flags, routes, metrics):
            queries.append((f"{path.name} ScaledObject", q))
    check_schema(checks, flags)
    check_dockerfile(checks, flags)
    check_nginx(checks, routes)
    queries += check_dashboard(checks, metrics)

    rules = yaml.safe_load((DEPLOY / "prometheus/classifyd.rules.yml").read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            name = rule.get("record") or rule.get("alert")
            check_promql(checks, f"rules {name}", rule["expr"], metrics)
    adapter = yaml.safe_load((DEPLOY / "prometheus/prometheus-adapter-values.yaml").read_text())
    for rule in adapter["rules"]["custom"]:
        check_promql(checks, "prometheus-adapter", rule["seriesQuery"], metrics)
        checks.expect(rule["name"]["as"] in metrics, "prometheus-adapter: served metric name")

    if args.promql_out:
        # As recording rules, so that `promtool check rules` parses every query.
        rules_out = [
            {"record": f"dashboard:query_{i}:check", "expr": fill_variables(expr)}
            for i, (_, expr) in enumerate(queries)
        ]
        args.promql_out.write_text(
            yaml.safe_dump({"groups": [{"name": "queries", "rules": rules_out}]})
        )

    for failure in checks.failed:
        print(f"FAIL {failure}")
    print(
        f"{checks.passed} checks passed, {len(checks.failed)} failed "
        f"({len(files)} rendered files, {len(flags)} flags, {len(routes)} routes, "
        f"{len(metrics)} series names, {len(queries)} queries)"
    )
    return 1 if checks.failed else 0


if __name__ == "__main__":
    sys.exit(main())

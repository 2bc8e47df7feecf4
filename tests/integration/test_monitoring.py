"""The monitoring of deploy/: every metric and label that the Grafana dashboard and the alert
rules query is one a running ranker exports, the rules pass promtool's checks and unit tests, and
``ranker_ready`` follows readiness even when nothing probes ``/readyz``."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import Redis

from persistence.rebuild import Rebuild
from ranker.api import readiness
from ranker.dev import servers as devservers
from ranker.keys import Keys
from ranker.settings import Settings
from tests.fixtures.hostile import host_port
from tests.fixtures.ranker import ROOT, Processes, api_process, auth_headers, wait_for

DEPLOY = ROOT / "deploy"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "ranker.json"
DATASOURCES = DEPLOY / "grafana" / "provisioning" / "datasources" / "prometheus.yaml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
#: Where promtool is looked for after PATH (Debian's prometheus package puts it there).
PROMTOOL_PATHS = ("/usr/bin/promtool",)
#: Grafana's own variables, replaced by a duration like those they stand for, so that the
#: expression parses; the dashboard's variables ($route, $job) stand inside label values.
GRAFANA_DURATIONS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
#: The labels Prometheus puts on every series it scrapes, and the series it adds per target.
TARGET_LABELS = frozenset({"job", "instance"})
TARGET_SERIES = ("up",)
#: The names of a metric's samples by its type, after its family's name (the text format of
#: prometheus-client: a counter's family drops its _total).
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
}


def exported(text: str) -> dict[str, set[str]]:
    """Every sample name a ``/metrics`` answer exposes (its type's suffixes included, whether or
    not a sample was observed yet) with the label names seen on it; and Prometheus's ``up``."""
    found = {name: set(TARGET_LABELS) for name in TARGET_SERIES}
    for family in text_string_to_metric_families(text):
        for suffix in SUFFIXES.get(family.type, ("",)):
            found.setdefault(family.name + suffix, set(TARGET_LABELS))
        for sample in family.samples:
            found.setdefault(sample.name, set(TARGET_LABELS)).update(sample.labels)
    return found


def queried(expr: str) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """The series an expression selects (metric name, label names matched) and the label names
    it aggregates by or without. A selector naming no metric exactly is returned as written
    (and so found unknown)."""
    selectors: list[tuple[str, set[str]]] = []
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers
            exact = [
                m.value
                for m in matchers
                if m.name == "__name__" and m.op == promql_parser.MatchOp.Equal
            ]
            name = node.name or (exact[0] if exact else str(node))
            selectors.append((name, {m.name for m in matchers if m.name != "__name__"}))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)

    promql_parser.walk(promql_parser.parse(expr), visit)
    return selectors, grouping


def problems(expressions: list[str], exports: dict[str, set[str]]) -> list[str]:
    """What the expressions query that the exports do not have: metrics, labels of a metric,
    labels aggregated by that no metric has."""
    every_label = set().union(*exports.values())
    found = []
    for expr in expressions:
        selectors, grouping = queried(expr)
        for name, labels in selectors:
            if name not in exports:
                found.append(f"unknown metric {name} in {expr}")
            elif unknown := labels - exports[name]:
                found.append(f"{name} has no label {sorted(unknown)} in {expr}")
        if unknown := grouping - every_label:
            found.append(f"no metric has the label {sorted(unknown)} in {expr}")
    return found


def panels(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every panel of a dashboard, those inside rows included (rows excepted)."""
    found = []
    for node in nodes:
        found += panels(node.get("panels", []))
        if node["type"] != "row":
            found.append(node)
    return found


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def dashboard_expressions() -> list[str]:
    """The PromQL of every panel's queries and of the query variables (``label_values(expr,
    label)``), with Grafana's interval variables replaced."""
    board = dashboard()
    exprs = [target["expr"] for panel in panels(board["panels"]) for target in panel["targets"]]
    for variable in board["templating"]["list"]:
        if variable["type"] == "query":
            found = re.fullmatch(r"label_values\((.+),\s*\w+\)", variable["definition"])
            assert found, f"variable {variable['name']}: {variable['definition']}"
            exprs.append(found.group(1))
    for name, duration in GRAFANA_DURATIONS.items():
        exprs = [expr.replace(name, duration) for expr in exprs]
    return exprs


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


async def with_traffic(url: str) -> None:
    """What a day of a deployment shows, in brief: submissions (accepted, duplicate, rejected),
    reads, a 404, readiness probes, and a connection that does not speak HTTP."""
    async with httpx.AsyncClient(base_url=url, headers=auth_headers()) as http:

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await wait_for(ready, 30, "the watchdog's first rebuild")
        body = {"user_id": 7, "score": 120, "session_id": "monitoring-1"}
        for payload in (body, body, {"user_id": "seven", "score": 1}):
            await http.post("/api/leaderboard/submit", json=payload)
        for path in ("/api/leaderboard/top", "/api/leaderboard/rank/7", "/api/leaderboard/rank/8"):
            await http.get(path)
        await http.get("/api/leaderboard/around/7", params={"n": 2})
    reader, writer = await asyncio.open_connection(*host_port(url))
    writer.write(b"\x00\x01 not http\r\n\r\n")
    await writer.drain()
    await asyncio.wait_for(reader.read(), 10)  # answered 400 and closed
    writer.close()
    await writer.wait_closed()


async def scraped(url: str) -> str:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{url}/metrics")).text


def sample(text: str, name: str) -> float:
    """The value of the unlabelled sample ``name`` in a /metrics answer (NaN when absent)."""
    values = [float(line.split()[1]) for line in text.splitlines() if line.startswith(f"{name} ")]
    return values[0] if values else float("nan")


async def test_the_dashboard_and_the_alerts_query_only_what_ranker_exports(
    processes: Processes,
) -> None:
    url, _ = await processes.serve()  # with its worker and watchdog, as a single process runs
    await with_traffic(url)

    async def persisted() -> bool:
        return sample(await scraped(url), "ranker_worker_persisted_events_total") >= 1

    await wait_for(persisted, 20, "the worker to persist the accepted submission")
    text = await scraped(url)
    exports = exported(text)
    expressions = dashboard_expressions() + [rule["expr"] for rule in rules()]

    assert problems(expressions, exports) == []
    # Not vacuous: every area of the dashboard was read, and the traffic left its labels.
    used = {name for expr in expressions for name, _ in queried(expr)[0]}
    assert {
        "ranker_http_request_duration_seconds_bucket",
        "ranker_submissions_total",
        "ranker_backlog_events",
        "ranker_worker_lag_seconds",
        "ranker_worker_batch_size_events_bucket",
        "ranker_worker_commit_duration_seconds_bucket",
        "ranker_rebuild_duration_seconds_count",
        "ranker_redis_errors_total",
        "ranker_database_errors_total",
        "ranker_worker_persisted_events_total",
        "ranker_ready",
    } <= used
    assert exports["ranker_connections_refused_total"] >= {"reason"}
    assert sample(text, "ranker_ready") == 1


def test_the_check_finds_what_ranker_does_not_export() -> None:
    exports = exported(
        "# TYPE ranker_demo_total counter\n"
        'ranker_demo_total{outcome="accepted"} 1.0\n'
        "# TYPE ranker_wait_seconds histogram\n"
        'ranker_wait_seconds_bucket{le="+Inf"} 1.0\n'
        "ranker_wait_seconds_count 1.0\n"
        "ranker_wait_seconds_sum 0.5\n"
    )
    fine = [
        'sum by (outcome) (rate(ranker_demo_total{outcome="accepted"}[5m]))',
        "histogram_quantile(0.99, sum by (le) (rate(ranker_wait_seconds_bucket[5m])))",
        'up{job="ranker-api"} == 0 or {__name__="ranker_demo_created"}',
    ]

    assert problems(fine, exports) == []
    assert problems(["rate(ranker_made_up_total[5m]) / ranker_demo_total"], exports) == [
        "unknown metric ranker_made_up_total in rate(ranker_made_up_total[5m]) / ranker_demo_total"
    ]
    assert problems(['ranker_demo_total{reason="x"}'], exports) == [
        "ranker_demo_total has no label ['reason'] in ranker_demo_total{reason=\"x\"}"
    ]
    assert problems(["sum by (colour) (ranker_demo_total)"], exports) == [
        "no metric has the label ['colour'] in sum by (colour) (ranker_demo_total)"
    ]
    # A selector by a regular expression cannot be checked: it is reported, not passed.
    assert len(problems(['{__name__=~"ranker_.+"}'], exports)) == 1
    with pytest.raises(ValueError):
        queried("sum(rate(ranker_demo_total[5m])")


def test_panels_use_the_provisioned_data_source_through_the_variable() -> None:
    board = dashboard()
    (variable,) = [v for v in board["templating"]["list"] if v["type"] == "datasource"]
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    queries = [target for panel in panels(board["panels"]) for target in panel["targets"]]

    assert variable["current"]["value"] == source["uid"]
    assert len(queries) >= 20
    for item in [*panels(board["panels"]), *queries]:
        assert item["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, item


def test_every_rule_waits_names_a_severity_and_says_what_to_do() -> None:
    found = rules()

    assert {rule["alert"] for rule in found} == {
        "RankerBacklogGrowing",
        "RankerWorkerLagging",
        "RankerHighErrorRate",
        "RankerNotReady",
    }
    readme = (DEPLOY / "README.md").read_text()
    for rule in found:
        assert rule["for"], rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert "Runbook: deploy/README.md" in rule["annotations"]["description"]
        assert f"### {rule['alert']}" in readme


def test_compose_runs_the_monitoring_profile_on_these_files() -> None:
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    scrape = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    (job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "ranker-api"]
    api = services["api"]["command"]
    (source,) = yaml.safe_load(DATASOURCES.read_text())["datasources"]
    (provider,) = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "ranker.yaml").read_text()
    )["providers"]
    mounts = {}
    for name, port in (("prometheus", 9090), ("grafana", 3000)):
        assert services[name]["profiles"] == ["monitoring"]
        assert services[name]["ports"] == [f"127.0.0.1:{port}:{port}"]
        for volume in services[name]["volumes"]:
            origin, target, *mode = volume.split(":")
            mounts[target] = origin
            if origin.startswith("./"):
                assert (ROOT / origin).is_dir() and mode == ["ro"], volume
            else:
                assert origin in compose["volumes"], volume

    # Prometheus scrapes the API where compose serves /metrics, Grafana reads that Prometheus
    # and the dashboards where they are mounted.
    assert "RANKER_METRICS_PORT" not in services["api"]["environment"]
    assert job["static_configs"] == [{"targets": [f"api:{api[api.index('--port') + 1]}"]}]
    # ... and the worker on the metrics port of its own, bound where Prometheus reaches it.
    (worker_job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "ranker-worker"]
    worker = services["worker"]
    port = worker["environment"]["RANKER_METRICS_PORT"]
    assert worker["command"][worker["command"].index("--metrics-host") + 1] == "0.0.0.0"
    assert worker_job["static_configs"] == [{"targets": [f"worker:{port}"]}]
    # The anchor's environment is kept beside the port (a key alone would replace it all).
    assert worker["environment"]["RANKER_HEARTBEAT_FILE"] == "/tmp/ranker-alive"
    assert mounts["/etc/prometheus"] == "./deploy/prometheus"
    assert source["url"] == "http://prometheus:9090"
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"


def promtool(paths: tuple[str, ...] = PROMTOOL_PATHS) -> str:
    """promtool, from PATH or else ``paths`` (``.ci/run`` installs Debian's prometheus package):
    without it CI fails, and a developer's run skips saying where to get it."""
    found = shutil.which("promtool") or next(
        (path for path in paths if os.access(path, os.X_OK)), None
    )
    if found:
        return found
    reason = "promtool is missing: `apt-get install prometheus` (Debian) provides it"
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.mark.parametrize(
    "command",
    [
        ["check", "rules", "deploy/prometheus/alerts.yml"],
        ["test", "rules", "deploy/prometheus/alerts_test.yml"],
        ["check", "config", "deploy/prometheus/prometheus.yml"],
    ],
    ids=" ".join,
)
def test_promtool_accepts_the_rules_and_their_tests(command: list[str]) -> None:
    result = subprocess.run(
        [promtool(), *command], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("ci", ["true", ""])
def test_without_promtool_ci_fails_and_a_developer_is_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, ci: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("CI", ci)
    outcome = pytest.fail.Exception if ci else pytest.skip.Exception

    with pytest.raises(outcome, match="promtool is missing"):
        promtool((str(tmp_path / "promtool"),))


async def test_ranker_ready_follows_readiness_when_nothing_probes(
    settings: Settings,
    loaded: None,
    redis: Redis,
    pool: AsyncConnectionPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readiness, "INTERVAL_S", 0.05)
    async with api_process(settings) as http:

        def gauge_is(value: float) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:  # /metrics, never /readyz: only the task computes it
                return sample((await http.get("/metrics")).text, "ranker_ready") == value

            return check

        await wait_for(gauge_is(1), 10, "ranker_ready to be 1")
        await redis.delete(Keys(settings.namespace).marker)  # as when Redis lost its data
        await wait_for(gauge_is(0), 10, "ranker_ready to be 0 with the boards unloaded")
        await Rebuild(settings, redis, pool).run()
        await wait_for(gauge_is(1), 10, "ranker_ready to be 1 after the rebuild")


async def test_a_worker_running_alone_serves_its_metrics_on_its_port(
    processes: Processes, make_settings: Callable[..., Settings]
) -> None:
    port = devservers.free_port()
    url = f"http://127.0.0.1:{port}"
    worker = processes.start("worker", settings=make_settings(metrics_port=port))
    async with httpx.AsyncClient(base_url=url, headers=auth_headers()) as http:

        async def serving() -> bool:
            assert worker.poll() is None, processes.log_of(worker)
            try:
                return (await http.get("/metrics")).status_code == 200
            except httpx.TransportError:
                return False

        await wait_for(serving, 30, "the worker's /metrics")
        text = (await http.get("/metrics")).text
    assert "ranker_worker_lag_seconds" in text
    assert "ranker_worker_persisted_events_total" in text

"""deploy/monitoring: the ServiceMonitor finds the metrics Services, and every alert rule is valid PromQL over
series tetrapipe really exports, with labels those series really carry (a renamed metric breaks this test,
not the on-call engineer's night)."""

from __future__ import annotations

import re
from typing import Any

import promql_parser
import pytest
import yaml
from conftest import REPO
from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

MONITORING = REPO / "deploy" / "monitoring"
#: labels Prometheus adds to every series it scrapes through a ServiceMonitor
TARGET_LABELS = {"pod", "namespace", "service", "instance", "job", "container", "endpoint"}
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("_sum", "_count", "_created"),
}


def _docs(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((MONITORING / name).read_text()) if d]


def exported_series() -> dict[str, set[str]]:
    """Every series name tetrapipe's commands export, with its label names."""
    from tetrapipe.flows.collect_metrics import CollectMetrics
    from tetrapipe.metrics import PipelineMetrics
    from tetrapipe.sinks.siem import Route, Router
    from tetrapipe.sinks.siem.metrics import SinkCollector
    from tetrapipe.sinks.siem.stdout import StdoutSink

    series: dict[str, set[str]] = {}
    for holder in (PipelineMetrics(CollectorRegistry()), CollectMetrics(CollectorRegistry())):
        for metric in vars(holder).values():
            if isinstance(metric, MetricWrapperBase):
                for suffix in SUFFIXES[metric._type]:
                    labels = set(metric._labelnames) | ({"le"} if suffix == "_bucket" else set())
                    series[metric._name + suffix] = labels
    for family in SinkCollector(Router([Route("s", StdoutSink("s"))])).collect():
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def _selectors(expr: Any) -> tuple[list[tuple[str, set[str]]], set[str]]:
    """(metric name, matcher labels) of every selector, and the labels grouped or matched on."""
    found: list[tuple[str, set[str]]] = []
    grouping: set[str] = set()

    def visit(node: Any) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append((node.name, {m.name for m in node.matchers.matchers}))
        elif isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            grouping.update(node.modifier.labels)
        elif isinstance(node, promql_parser.BinaryExpr) and node.modifier is not None:
            matching = getattr(node.modifier, "matching", None)
            grouping.update(getattr(matching, "labels", None) or [])

    promql_parser.walk(expr, visit)
    return found, grouping


RULES = [(g["name"], r) for doc in _docs("prometheusrule.yaml") for g in doc["spec"]["groups"] for r in g["rules"]]


def test_kustomization_and_kinds() -> None:
    kust = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert sorted(kust["resources"]) == sorted(
        p.name for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml"
    )
    for name in kust["resources"]:
        for doc in _docs(name):
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            assert doc["kind"] in ("ServiceMonitor", "PrometheusRule") and doc["metadata"]["namespace"] == "tetrapipe"


def test_servicemonitor_selects_every_metrics_service_by_its_port_name() -> None:
    (sm,) = _docs("servicemonitor.yaml")
    wanted = sm["spec"]["selector"]["matchLabels"]
    services = [d for d in yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "services.yaml").read_text()) if d]
    selected = [s for s in services if wanted.items() <= s["metadata"]["labels"].items()]
    assert {s["metadata"]["name"] for s in selected} == {
        "tetrapipe-collector-metrics",
        "tetrapipe-processor-metrics",
        "tetrapipe-forwarder-metrics",
    }
    for endpoint in sm["spec"]["endpoints"]:
        assert all(endpoint["port"] in {p["name"] for p in s["spec"]["ports"]} for s in selected)
        assert endpoint["path"] == "/metrics"


@pytest.mark.parametrize(("group", "rule"), RULES, ids=[r["alert"] for _, r in RULES])
def test_alert_rule_is_valid_promql_over_exported_series(group: str, rule: dict[str, Any]) -> None:
    series = exported_series()
    assert rule["alert"].startswith("Tetrapipe") and rule["alert"].isalnum()
    if "for" in rule:
        assert promql_parser.parse_duration(rule["for"]).total_seconds() > 0
    assert rule["labels"]["severity"] in ("info", "warning", "critical")
    assert rule["annotations"]["summary"] and rule["annotations"]["description"]
    labels = _check_expr(f"{group}/{rule['alert']}", rule["expr"], series)
    text = rule["annotations"]["summary"] + rule["annotations"]["description"]
    used = set(re.findall(r"\$labels\.(\w+)", text))
    assert used <= labels, f"{rule['alert']}: annotations name labels the alert does not carry: {used - labels}"


def _check_expr(where: str, text: str, series: dict[str, set[str]]) -> set[str]:
    """Parse ``text``, check every series and label it names; return the labels its result can carry."""
    selectors, grouping = _selectors(promql_parser.parse(text))
    assert selectors, f"{where}: reads no series"
    available: set[str] = set(TARGET_LABELS)
    for name, matched in selectors:
        assert name in series, f"{where}: tetrapipe exports no series {name!r}"
        assert matched <= series[name] | TARGET_LABELS, f"{where}: {name} has no label {matched - series[name]}"
        available |= series[name]
    assert grouping <= available, f"{where}: grouped by labels the series do not carry: {grouping - available}"
    return grouping or available


def test_grafana_dashboard_queries_exported_series() -> None:
    import json

    dash = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    series = exported_series()
    targets = [(p["title"], t) for p in dash["panels"] for t in p.get("targets", [])]
    assert len(targets) >= 12 and dash["uid"] == "tetrapipe"
    for title, target in targets:
        # Grafana's own variables, as Grafana substitutes them before Prometheus sees the query
        text = target["expr"].replace("$__rate_interval", "1m").replace("$__range", "6h")
        labels = _check_expr(title, text, series)
        legend = set(re.findall(r"{{\s*(\w+)\s*}}", target.get("legendFormat", "")))
        assert legend <= labels, f"{title}: legend names labels the query drops: {legend - labels}"
    sections = [p["title"] for p in dash["panels"] if p["type"] == "row"]
    assert [s.split()[0] for s in sections] == ["Collector", "Processor", "SIEM"]
    kust = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kust["configMapGenerator"][0]["files"] == ["grafana-dashboard.json"]


def test_the_checker_catches_a_renamed_metric() -> None:
    """The test above is live: a metric that does not exist is found, whatever the expression's shape."""
    selectors, _ = _selectors(promql_parser.parse("sum by (pod) (rate(tetrapipe_process_evnets_total[5m])) > 0"))
    assert [name for name, _ in selectors] == ["tetrapipe_process_evnets_total"]
    assert "tetrapipe_process_evnets_total" not in exported_series()
    assert "tetrapipe_process_events_total" in exported_series()
    with pytest.raises(ValueError):
        promql_parser.parse("sum by (pod (tetrapipe_process_events_total)")


def test_readme_points_at_the_monitoring_manifests() -> None:
    assert "kubectl apply\n-k deploy/monitoring" in (REPO / "README.md").read_text()

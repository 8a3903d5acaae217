"""Grafana provisioning and dashboards: valid JSON, wired to the provisioned datasource, real metrics."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.deploy.conftest import DEPLOY
from tests.deploy.metric_names import (
    alert_exprs,
    dashboard_exprs,
    defined_metric_names,
    names_in,
    recorded_names_in,
    recording_rules,
)

GRAFANA = DEPLOY / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))


def datasource_uid() -> str:
    config = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = config["datasources"]
    assert source["type"] == "prometheus" and source["url"] == "http://prometheus:9090"
    return source["uid"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_is_valid_and_uses_the_provisioned_datasource(path) -> None:
    dashboard = json.loads(path.read_text())
    assert dashboard["uid"] and dashboard["title"] and dashboard["schemaVersion"] >= 36
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    uid = datasource_uid()
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == uid and target["expr"].strip(), (panel["title"], target)


def test_the_provider_loads_the_mounted_dashboards() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/segwarden.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file" and entry["options"]["path"] == "/var/lib/grafana/dashboards"


def test_dashboards_show_what_operators_need() -> None:
    names = names_in(dashboard_exprs()) | recorded_names_in(dashboard_exprs())
    needed = {
        "segwarden:eviction_latency_seconds:p99_5m",
        "segwarden:eviction_latency_seconds:p50_5m",
        "segwarden_messages_consumed_total",
        "segwarden_messages_published_total",
        "segwarden:consumer_lag_messages:sum",
        "segwarden_dead_letters_total",
        "segwarden_consent_changes_total",
        "segwarden_segmenter_segment_size",
        "segwarden_audit_ledger_length",
        "segwarden_audit_last_checkpoint_age_seconds",
    }
    assert needed <= names, sorted(needed - names)


def test_dashboards_and_alerts_read_only_metrics_the_code_defines() -> None:
    exprs = dashboard_exprs() + alert_exprs()
    undefined = names_in(exprs) - defined_metric_names()
    assert not undefined, f"named in dashboards or alerts but defined nowhere: {sorted(undefined)}"
    assert recorded_names_in(exprs) <= recording_rules()


def test_every_dashboard_query_is_valid_promql(promtool: str, tmp_path) -> None:
    """promtool parses each query as a recording rule (Grafana's `$__rate_interval` set to 1m)."""
    rules = [
        {"record": f"dashboard:query_{number}", "expr": expr.replace("$__rate_interval", "1m")}
        for number, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout

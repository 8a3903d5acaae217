"""Prometheus config and rules: promtool validates them, and a unit test fires every alert."""

from __future__ import annotations

import re
import subprocess

import yaml

from tests.deploy.conftest import DEPLOY, ROOT

PROMETHEUS = DEPLOY / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))


def promtool_run(promtool: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def alerts() -> dict[str, dict]:
    return {
        rule["alert"]: rule
        for path in RULE_FILES
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }


def test_promtool_checks_the_config(promtool: str) -> None:
    result = promtool_run(promtool, "check", "config", str(PROMETHEUS / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


def test_promtool_checks_the_rules(promtool: str) -> None:
    assert RULE_FILES
    result = promtool_run(promtool, "check", "rules", *map(str, RULE_FILES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS
    result = promtool_run(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_shown_firing_by_a_unit_test() -> None:
    fired = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                if check.get("exp_alerts"):
                    fired.add(check["alertname"])
    assert set(alerts()) <= fired, f"alerts no unit test fires: {sorted(set(alerts()) - fired)}"


def test_the_expected_alerts_exist() -> None:
    expected = {
        "SegwardenEvictionLatencyHigh",
        "SegwardenComplianceViolation",
        "SegwardenConsumerLagGrowing",
        "SegwardenDeadLetters",
        "SegwardenConsentOutboxBacklog",
        "SegwardenAuditVerifyFailed",
        "SegwardenAuditCheckpointStale",
        "SegwardenServiceDown",
        "SegwardenTaskFailing",
        "SegwardenDeliveryFailing",
        "SegwardenDestinationPaused",
    }
    assert expected <= set(alerts())


def test_every_alert_has_a_severity_and_a_runbook_section_in_the_docs() -> None:
    operations = (ROOT / "docs" / "operations.md").read_text()
    headings = {
        re.sub(r"[^a-z0-9 -]", "", h.lower()).replace(" ", "-")
        for h in re.findall(r"^#+ (.+)$", operations, re.M)
    }
    for name, rule in alerts().items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        path, _, anchor = rule["annotations"]["runbook"].partition("#")
        assert path == "docs/operations.md" and anchor in headings, f"{name}: no section #{anchor}"


def test_scrape_jobs_match_the_compose_services_and_ports() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for name, variable in (
        ("consent", "CONSENT_PORT"),
        ("segmenter", "SEGMENTER_PORT"),
        ("audit", "AUDIT_PORT"),
        ("delivery", "DELIVERY_PORT"),
    ):
        (sd,) = jobs[name]["dns_sd_configs"]
        assert sd["names"] == [name] and sd["port"] == compose[name]["environment"][variable]

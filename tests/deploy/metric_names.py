"""Which metric names the alert rules and dashboards read, and which ones the code defines."""

from __future__ import annotations

import importlib
import json
import pkgutil
import re
from collections.abc import Iterable

import yaml
from prometheus_client import REGISTRY

import services
from tests.deploy.conftest import DEPLOY

# Every segwarden metric is prefixed; recording rules are named level:metric:operations.
METRIC = re.compile(r"\bsegwarden_[a-z0-9_]+\b")
RECORDED = re.compile(r"\bsegwarden:[a-z0-9_:]+\b")
SUFFIXES = {
    "counter": ("_total",),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
    "stateset": ("",),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "unknown": ("",),
}


def rules() -> list[dict]:
    return [
        rule
        for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml"))
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
    ]


def dashboard_exprs() -> list[str]:
    exprs = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        for panel in json.loads(path.read_text())["panels"]:
            exprs += [target["expr"] for target in panel.get("targets", [])]
    return exprs


def alert_exprs() -> list[str]:
    return [rule["expr"] for rule in rules()]


def names_in(exprs: Iterable[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC.findall(expr)}


def recorded_names_in(exprs: Iterable[str]) -> set[str]:
    return {name for expr in exprs for name in RECORDED.findall(expr)}


def recording_rules() -> set[str]:
    return {rule["record"] for rule in rules() if "record" in rule}


def defined_metric_names() -> set[str]:
    """Sample names of every metric in shared/metrics.py and services/*/metrics.py."""
    importlib.import_module("shared.metrics")
    for module in pkgutil.iter_modules(services.__path__):
        try:
            importlib.import_module(f"services.{module.name}.metrics")
        except ModuleNotFoundError as exc:
            if exc.name != f"services.{module.name}.metrics":
                raise
    return {
        family.name + suffix
        for family in REGISTRY.collect()
        if family.name.startswith("segwarden_")
        for suffix in SUFFIXES[family.type]
    }


def exposed_names(metrics_text: str) -> set[str]:
    """Sample names present in a /metrics page (a labelled metric appears once it has a child)."""
    return {
        line.split("{")[0].split(" ")[0]
        for line in metrics_text.splitlines()
        if line and not line.startswith("#")
    }

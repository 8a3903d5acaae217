"""docker-compose.yml, read statically (no Docker engine here): healthchecks, pinned images, wiring."""

from __future__ import annotations

import re

import pytest

from services.audit.settings import AuditSettings
from services.consent.settings import ConsentSettings
from services.delivery.bootstrap import LEASE_MARGIN_S
from services.delivery.settings import DeliverySettings
from services.segmenter.settings import SegmenterSettings
from shared.auth import INTERNAL_SCOPES, TokenRegistry
from shared.settings import ServiceSettings
from tests.deploy.compose import COMPOSE, SERVICES, generated_secrets, resolve, service_environment
from tests.deploy.conftest import ROOT

SEGWARDEN: dict[str, type[ServiceSettings]] = {
    "consent": ConsentSettings,
    "segmenter": SegmenterSettings,
    "audit": AuditSettings,
    "delivery": DeliverySettings,
}


def test_every_service_has_a_healthcheck() -> None:
    missing = [name for name, svc in SERVICES.items() if not svc.get("healthcheck", {}).get("test")]
    assert not missing, f"services without a healthcheck: {missing}"


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_every_image_is_pinned_by_tag(name: str) -> None:
    image = resolve(SERVICES[name]["image"])
    repository, _, tag = image.rpartition(":")
    assert repository and "/" not in tag, f"{name}: {image} has no tag"
    assert tag not in {"latest", "", "stable", "main"}, f"{name}: {image} is not pinned"
    assert re.search(r"\d", tag), f"{name}: {image} has no version in its tag"


def test_every_dependency_waits_for_health() -> None:
    for name, svc in SERVICES.items():
        for dependency, spec in svc.get("depends_on", {}).items():
            assert dependency in SERVICES, f"{name} depends on unknown {dependency}"
            assert spec["condition"] == "service_healthy", f"{name} -> {dependency}: {spec}"


def test_the_segwarden_services_wait_for_their_stores() -> None:
    for name in SEGWARDEN:
        assert {"kafka", "redis", "postgres"} <= set(SERVICES[name]["depends_on"]), name


def test_one_kraft_broker_by_default_and_three_in_the_cluster_profile() -> None:
    brokers = {n: s for n, s in SERVICES.items() if s["image"].startswith("apache/kafka:")}
    default = [n for n, s in brokers.items() if not s.get("profiles")]
    assert default == ["kafka"]
    assert sorted(n for n, s in brokers.items() if "cluster" in s.get("profiles", [])) == [
        "kafka-2",
        "kafka-3",
    ]
    for name, broker in brokers.items():
        env = broker["environment"]
        assert "broker" in env["KAFKA_PROCESS_ROLES"] and env["KAFKA_CONTROLLER_QUORUM_VOTERS"], name
        assert f"//{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
    # The optional brokers must not be required when their profile is off.
    for name in SEGWARDEN:
        assert SERVICES[name]["depends_on"]["kafka-2"]["required"] is False


def test_the_segmenter_runs_two_replicas() -> None:
    assert SERVICES["segmenter"]["deploy"]["replicas"] == 2


def test_a_stop_of_delivery_is_given_the_time_its_webhooks_in_flight_may_take() -> None:
    """A stop waits for the webhooks in flight for up to their lease (docs/delivery.md): compose
    must wait longer than that before its SIGKILL (its default is 10 s)."""
    lease = DeliverySettings.model_fields["delivery_timeout_s"].default + LEASE_MARGIN_S
    grace = COMPOSE["services"]["delivery"]["stop_grace_period"]
    assert "DELIVERY_TIMEOUT_S" not in COMPOSE["services"]["delivery"]["environment"]
    assert re.fullmatch(r"\d+s", grace) and int(grace[:-1]) > lease


def test_redis_persists_to_a_volume() -> None:
    redis = SERVICES["redis"]
    assert "--appendonly" in redis["command"] and "yes" in redis["command"]
    assert any(v.endswith(":/data") for v in redis["volumes"])


@pytest.mark.parametrize("name", sorted(SEGWARDEN))
def test_service_environment_names_real_settings(name: str) -> None:
    """A misspelt variable would be ignored silently by pydantic-settings (extra="ignore")."""
    fields = set(SEGWARDEN[name].model_fields)
    unknown = [key for key in SERVICES[name]["environment"] if key.lower() not in fields]
    assert not unknown, f"{name}: not settings of {SEGWARDEN[name].__name__}: {unknown}"
    assert SERVICES[name]["environment"]["BIND_HOST"] == "0.0.0.0"
    assert SERVICES[name]["command"] == ["segwarden", "serve", name]


def test_stores_are_postgres_for_consent_and_audit() -> None:
    assert SERVICES["consent"]["environment"]["CONSENT_DB_URL"].startswith("postgresql+psycopg://")
    assert SERVICES["audit"]["environment"]["AUDIT_DB_URL"].startswith("postgresql+psycopg://")
    init = (ROOT / "deploy/postgres/init-databases.sql").read_text()
    for database in ("consent", "audit"):
        assert f"CREATE DATABASE {database};" in init


def test_secrets_are_required_not_shipped() -> None:
    env = SERVICES["consent"]["environment"]
    for secret in ("AUTH_TOKENS", "INTERNAL_TOKEN", "PSEUDONYM_KEY"):
        assert re.fullmatch(r"\$\{" + secret + r":\?[^}]+\}", env[secret]), secret


def test_every_named_volume_is_declared_and_every_mounted_file_exists() -> None:
    declared = set(COMPOSE["volumes"])
    for name, svc in SERVICES.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} is not declared"


def test_prometheus_gets_its_config_and_rules_and_grafana_its_dashboards() -> None:
    prometheus = " ".join(SERVICES["prometheus"]["volumes"])
    assert "./deploy/prometheus/prometheus.yml:" in prometheus and "./deploy/prometheus/rules:" in prometheus
    grafana = " ".join(SERVICES["grafana"]["volumes"])
    assert "./deploy/grafana/provisioning:" in grafana and "./deploy/grafana/dashboards:" in grafana


def test_generated_secrets_fill_every_required_variable() -> None:
    """`deploy/make_env.py > .env` is enough for compose to start: nothing required is left empty."""
    secrets = generated_secrets()
    for name in SEGWARDEN:
        env = service_environment(name, secrets, {})
        assert all("${" not in value for value in env.values()), env
    with pytest.raises(KeyError, match="AUTH_TOKENS"):
        service_environment("consent", {}, {})
    assert len(bytes.fromhex(secrets["PSEUDONYM_KEY"])) == 32


@pytest.mark.parametrize("name", sorted(name for name, svc in SERVICES.items() if svc.get("ports")))
def test_published_ports_bind_to_loopback_unless_told_otherwise(name: str) -> None:
    for port in SERVICES[name]["ports"]:
        assert resolve(port).startswith("127.0.0.1:"), f"{name}: {port} is published on every interface"
        assert resolve(port, {"BIND_ADDRESS": "0.0.0.0"}).startswith("0.0.0.0:"), port


def test_only_the_apis_and_dashboards_are_published() -> None:
    published = {name for name, svc in SERVICES.items() if svc.get("ports")}
    assert published == {"consent", "segmenter", "audit", "delivery", "prometheus", "grafana"}


def test_prometheus_has_no_lifecycle_or_admin_api() -> None:
    flags = SERVICES["prometheus"]["command"]
    assert not [
        flag for flag in flags if flag.startswith(("--web.enable-lifecycle", "--web.enable-admin-api"))
    ]


def test_the_internal_token_gets_only_the_scopes_services_need() -> None:
    secrets = generated_secrets()
    registry = TokenRegistry.parse(secrets["AUTH_TOKENS"])
    internal = registry.lookup(secrets["INTERNAL_TOKEN"])
    assert internal is not None and internal.scopes == INTERNAL_SCOPES

"""Kubernetes manifests: probes on /readyz and /healthz, scrape annotations, env from ConfigMap and Secret."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest
import yaml

from services.audit.settings import AuditSettings
from services.consent.settings import ConsentSettings
from services.delivery.bootstrap import LEASE_MARGIN_S
from services.delivery.settings import DeliverySettings
from services.segmenter.settings import SegmenterSettings
from shared.settings import ServiceSettings
from tests.deploy.conftest import DEPLOY

K8S = DEPLOY / "k8s"
KUSTOMIZATION = yaml.safe_load((K8S / "kustomization.yaml").read_text())
DOCUMENTS = [
    doc for name in KUSTOMIZATION["resources"] for doc in yaml.safe_load_all((K8S / name).read_text())
]
DEPLOYMENTS = {doc["metadata"]["name"]: doc for doc in DOCUMENTS if doc["kind"] == "Deployment"}
PORTS = {"consent": 8001, "segmenter": 8002, "audit": 8003, "delivery": 8004}
SETTINGS: dict[str, type[ServiceSettings]] = {
    "consent": ConsentSettings,
    "segmenter": SegmenterSettings,
    "audit": AuditSettings,
    "delivery": DeliverySettings,
}


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_manifest_is_valid_against_the_kubernetes_schema(document: dict[str, Any]) -> None:
    """Strict: a misspelt field (`readinesProbe`) is an error, not silently ignored by the API server."""
    kubernetes_validate.validate(document, "1.30.0", strict=True)


def container(name: str) -> dict[str, Any]:
    (only,) = DEPLOYMENTS[name]["spec"]["template"]["spec"]["containers"]
    return only


def test_one_deployment_per_service_and_two_segmenters() -> None:
    assert set(DEPLOYMENTS) == set(PORTS)
    assert DEPLOYMENTS["segmenter"]["spec"]["replicas"] == 2


@pytest.mark.parametrize("name", sorted(PORTS))
def test_probes_hit_readyz_and_healthz_on_the_service_port(name: str) -> None:
    spec = container(name)
    (port,) = spec["ports"]
    assert port["containerPort"] == PORTS[name]
    assert spec["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert spec["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    env = {item["name"]: item["value"] for item in spec["env"]}
    assert env[f"{name.upper()}_PORT"] == str(PORTS[name])
    assert spec["command"] == ["segwarden", "serve", name]


@pytest.mark.parametrize("name", sorted(PORTS))
def test_pods_carry_scrape_annotations(name: str) -> None:
    annotations = DEPLOYMENTS[name]["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(PORTS[name])
    assert annotations["prometheus.io/path"] == "/metrics"


@pytest.mark.parametrize("name", sorted(PORTS))
def test_config_comes_from_the_configmap_and_the_secret(name: str) -> None:
    sources = container(name)["envFrom"]
    assert {"configMapRef": {"name": "segwarden-config"}} in sources
    assert {"secretRef": {"name": "segwarden-secrets"}} in sources
    generated = {entry["name"] for entry in KUSTOMIZATION["secretGenerator"]}
    assert "segwarden-secrets" in generated


def test_configmap_keys_are_settings_of_every_service() -> None:
    (configmap,) = [doc for doc in DOCUMENTS if doc["kind"] == "ConfigMap"]
    for name, settings in SETTINGS.items():
        unknown = [key for key in configmap["data"] if key.lower() not in settings.model_fields]
        assert not unknown, f"{name}: {unknown}"
    assert configmap["data"]["BIND_HOST"] == "0.0.0.0"


@pytest.mark.parametrize("name", sorted(PORTS))
def test_containers_run_as_non_root_with_a_pinned_image(name: str) -> None:
    pod = DEPLOYMENTS[name]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    spec = container(name)
    assert spec["securityContext"]["allowPrivilegeEscalation"] is False
    repository, _, tag = spec["image"].rpartition(":")
    assert repository == "segwarden" and tag not in {"", "latest"}


def test_services_select_their_deployments() -> None:
    services = {doc["metadata"]["name"]: doc for doc in DOCUMENTS if doc["kind"] == "Service"}
    for name, port in PORTS.items():
        assert services[name]["spec"]["selector"] == {"app.kubernetes.io/name": name}
        assert services[name]["spec"]["ports"][0]["port"] == port


def test_service_monitor_scrapes_the_services_by_port_name() -> None:
    (monitor,) = yaml.safe_load_all((K8S / "servicemonitor.yaml").read_text())
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {"port": "http", "path": "/metrics", "interval": "15s"}
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert sorted(expression["values"]) == sorted(PORTS)


POLICIES = {doc["metadata"]["name"]: doc for doc in DOCUMENTS if doc["kind"] == "NetworkPolicy"}
KAFKA_PORTS = {("*", 9092), ("*", 9093)}


def peer(selector: dict[str, Any]) -> str:
    """A `from`/`to` entry as a name: a service of ours, labelled clients, or DNS."""
    pods = selector.get("podSelector", {}).get("matchLabels", {})
    if "namespaceSelector" not in selector:
        return pods["app.kubernetes.io/name"]
    if pods == {"segwarden.io/client": "true"}:
        return "client"
    assert pods == {"k8s-app": "kube-dns"}, selector
    return "dns"


def paths(policy: dict[str, Any], direction: str) -> set[tuple[str, int]]:
    """(peer, port) pairs a policy allows; `*` for a rule that names ports only."""
    key = "from" if direction == "ingress" else "to"
    allowed = set()
    for rule in policy["spec"].get(direction, []):
        assert rule.get("ports"), f"{policy['metadata']['name']}: a {direction} rule without ports allows all"
        peers = [peer(selector) for selector in rule.get(key, [])] or ["*"]
        allowed |= {(name, port["port"]) for name in peers for port in rule["ports"]}
    return allowed


def test_the_namespace_denies_everything_by_default() -> None:
    deny = POLICIES["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert paths(POLICIES["allow-dns"], "egress") == {("dns", 53)}


def test_network_policies_allow_only_the_paths_the_services_use() -> None:
    for name in PORTS:
        assert POLICIES[name]["spec"]["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": name}}
        assert POLICIES[name]["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert paths(POLICIES["consent"], "ingress") == {("client", 8001)}
    assert paths(POLICIES["segmenter"], "ingress") == {("consent", 8002), ("client", 8002)}
    assert paths(POLICIES["audit"], "ingress") == {("consent", 8003), ("client", 8003)}
    assert (
        paths(POLICIES["consent"], "egress")
        == {("segmenter", 8002), ("audit", 8003), ("delivery", 8004), ("*", 5432)} | KAFKA_PORTS
    )
    assert paths(POLICIES["segmenter"], "egress") == {("*", 6379)} | KAFKA_PORTS
    assert paths(POLICIES["audit"], "egress") == {("delivery", 8004), ("*", 5432)} | KAFKA_PORTS
    assert paths(POLICIES["delivery"], "ingress") == {("consent", 8004), ("audit", 8004), ("client", 8004)}
    assert paths(POLICIES["delivery"], "egress") == {("*", 443)} | KAFKA_PORTS


def test_the_policy_ports_are_the_container_ports() -> None:
    for name in PORTS:
        (port,) = container(name)["ports"]
        assert {p for _, p in paths(POLICIES[name], "ingress")} == {port["containerPort"]}


def test_a_stop_of_delivery_is_given_the_time_its_webhooks_in_flight_may_take() -> None:
    """As in compose: the pod's grace before its SIGKILL exceeds the lease of a webhook in flight."""
    lease = DeliverySettings.model_fields["delivery_timeout_s"].default + LEASE_MARGIN_S
    assert DEPLOYMENTS["delivery"]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > lease

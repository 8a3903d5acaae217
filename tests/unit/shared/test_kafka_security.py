"""Kafka TLS and SASL: every protocol gives the client arguments it needs, a bad combination is refused."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faust.auth import SASLCredentials, SSLCredentials
from faust.types.auth import AuthProtocol
from pydantic import ValidationError

from shared.kafka import faust_credentials, kafka_security
from shared.settings import ServiceSettings

SASL = {"kafka_sasl_username": "segwarden", "kafka_sasl_password": "s3cret"}


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A self-signed certificate and its key, as a CA file and a client certificate."""
    folder = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kafka.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = {"cert": folder / "cert.pem", "key": folder / "key.pem"}
    files["cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


def settings(**values: Any) -> ServiceSettings:
    return ServiceSettings(**values)


def test_plaintext_adds_nothing_but_the_protocol() -> None:
    assert kafka_security(settings()) == {"security_protocol": "PLAINTEXT"}
    assert faust_credentials(settings()) is None


def test_ssl_verifies_the_broker_against_the_ca_file_and_presents_the_client_certificate(
    pem: dict[str, Path],
) -> None:
    kwargs = kafka_security(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=pem["cert"],
            kafka_ssl_certfile=pem["cert"],
            kafka_ssl_keyfile=pem["key"],
        )
    )
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    context = kwargs["ssl_context"]
    assert kwargs["security_protocol"] == "SSL"
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [c["subject"] for c in context.get_ca_certs()] == [((("commonName", "kafka.test"),),)]


def test_ssl_without_a_ca_file_trusts_the_system_cas() -> None:
    context = kafka_security(settings(kafka_security_protocol="SSL"))["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_sends_the_credentials_over_tls(mechanism: str) -> None:
    chosen = settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism, **SASL)
    kwargs = kafka_security(chosen)
    assert kwargs["security_protocol"] == "SASL_SSL"
    assert kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("segwarden", "s3cret")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)


def test_sasl_plaintext_scram_has_no_tls_context() -> None:
    kwargs = kafka_security(settings(kafka_security_protocol="SASL_PLAINTEXT", **SASL))
    assert kwargs["sasl_mechanism"] == "SCRAM-SHA-512"
    assert "ssl_context" not in kwargs


def test_faust_gets_the_same_credentials(pem: dict[str, Path]) -> None:
    chosen = settings(kafka_security_protocol="SASL_SSL", kafka_ssl_cafile=pem["cert"], **SASL)
    sasl = faust_credentials(chosen)
    assert isinstance(sasl, SASLCredentials)
    assert sasl.protocol is AuthProtocol.SASL_SSL and sasl.mechanism.value == "SCRAM-SHA-512"
    assert (sasl.username, sasl.password) == ("segwarden", "s3cret")
    tls = faust_credentials(settings(kafka_security_protocol="SSL"))
    assert isinstance(tls, SSLCredentials) and tls.protocol is AuthProtocol.SSL
    plain = faust_credentials(settings(kafka_security_protocol="SASL_PLAINTEXT", **SASL))
    assert isinstance(plain, SASLCredentials) and plain.protocol is AuthProtocol.SASL_PLAINTEXT


def test_the_password_stays_out_of_the_settings_repr() -> None:
    assert "s3cret" not in repr(settings(kafka_security_protocol="SASL_SSL", **SASL))


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_password": "x"}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_SSL", "kafka_sasl_username": "u"}, "KAFKA_SASL_PASSWORD"),
        ({"kafka_security_protocol": "SSL", **SASL}, "KAFKA_SASL_USERNAME"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT", "kafka_sasl_mechanism": "PLAIN", **SASL}, "PLAIN"),
        ({"kafka_ssl_cafile": "cert"}, "KAFKA_SSL_CAFILE"),
        ({"kafka_security_protocol": "SSL", "kafka_ssl_keyfile": "key"}, "KAFKA_SSL_KEYFILE"),
    ],
)
def test_a_bad_combination_is_refused_naming_the_variable(
    pem: dict[str, Path], values: dict[str, Any], named: str
) -> None:
    values = {k: pem.get(v, v) if k.startswith("kafka_ssl") else v for k, v in values.items()}
    with pytest.raises(ValidationError) as caught:
        settings(**values)
    assert named in str(caught.value)


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("kafka_security_protocol", "TLS"),
        ("kafka_sasl_mechanism", "GSSAPI"),
        ("kafka_ssl_cafile", "/nonexistent/ca.pem"),
    ],
)
def test_a_bad_value_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ValidationError) as caught:
        settings(**{"kafka_security_protocol": "SSL", variable: value})
    assert caught.value.errors()[0]["loc"] == (variable,)


def test_redis_tls_must_verify_the_server_and_the_error_hides_the_password() -> None:
    assert settings(redis_url="rediss://:pw@redis.internal:6380/0?ssl_ca_certs=/ca.pem").redis_url
    with pytest.raises(ValidationError, match="ssl_cert_reqs"):
        settings(redis_url="rediss://:pw@redis.internal:6380/0?ssl_cert_reqs=none")
    with pytest.raises(ValidationError) as caught:
        settings(redis_url="http://:hunter2@redis.internal")
    assert "hunter2" not in caught.value.errors()[0]["msg"]  # the one line the CLI prints

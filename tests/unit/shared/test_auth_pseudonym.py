"""Bearer tokens with scopes, and keyed pseudonyms."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from hypothesis import given
from hypothesis import strategies as st

from shared.auth import (
    INTERNAL_SCOPES,
    AuthConfigError,
    TokenRegistry,
    internal_token,
    load_tokens,
    require_scope,
)
from shared.pseudonym import PseudonymKeyError, load_pseudonym_key, pseudonymize
from shared.settings import ServiceSettings


def test_tokens_parse_with_scopes() -> None:
    registry = TokenRegistry.parse("reader-token=consent:read, admin-token-x=*")
    reader = registry.lookup("reader-token")
    assert reader is not None and reader.allows("consent:read") and not reader.allows("dsr")
    admin = registry.lookup("admin-token-x")
    assert admin is not None and admin.allows("dsr")
    assert registry.lookup("nobody-token") is None


@pytest.mark.parametrize("spec", ["no-equals-sign", "short=*", "longenough-token=", "tok-en-123=fly"])
def test_bad_token_specs_are_refused_without_echoing_the_token(spec: str) -> None:
    with pytest.raises(AuthConfigError) as caught:
        TokenRegistry.parse(spec)
    assert "AUTH_TOKENS" in str(caught.value)
    token = spec.partition("=")[0]
    assert token not in str(caught.value)


@pytest.mark.parametrize("scopes", ["segments:read|audit:read|propagation:read|destinations:read", "*"])
def test_internal_token_with_the_scopes_services_need_is_accepted(tmp_path: Path, scopes: str) -> None:
    settings = ServiceSettings(
        data_dir=tmp_path, auth_tokens=f"admin-token-x=*,internal-tok={scopes}", internal_token="internal-tok"
    )
    assert internal_token(settings) == "internal-tok"


def test_internal_token_lacking_a_needed_scope_is_refused_without_echoing_it(tmp_path: Path) -> None:
    settings = ServiceSettings(
        data_dir=tmp_path, auth_tokens="internal-tok=segments:read", internal_token="internal-tok"
    )
    with pytest.raises(AuthConfigError, match=r"INTERNAL_TOKEN: .*audit:read") as caught:
        internal_token(settings)
    assert "internal-tok" not in str(caught.value)
    assert INTERNAL_SCOPES == {"segments:read", "audit:read", "propagation:read", "destinations:read"}


def test_admin_token_is_generated_once(tmp_path: Path) -> None:
    settings = ServiceSettings(data_dir=tmp_path)
    first = load_tokens(settings)
    token = (tmp_path / "admin-token").read_text().strip()
    assert len(token) >= 32
    assert (tmp_path / "admin-token").stat().st_mode & 0o077 == 0
    assert first.lookup(token) is not None
    assert load_tokens(settings).lookup(token) is not None


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.tokens = TokenRegistry.parse("reader-token=consent:read,writer-token=consent:write")

    @app.get("/v1/thing", dependencies=[require_scope("consent:read")])
    async def thing() -> dict[str, str]:
        return {"ok": "yes"}

    return app


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer unknown-token"}, 401),
        ({"Authorization": "Basic abc"}, 401),
        ({"Authorization": "Bearer writer-token"}, 403),
        ({"Authorization": "Bearer reader-token"}, 200),
    ],
)
async def test_scope_dependency(headers: dict[str, str], status: int) -> None:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/v1/thing", headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_pseudonym_is_hmac_sha256_of_the_id() -> None:
    key = b"k" * 32
    expected = hmac.new(key, b"c-1042", hashlib.sha256).hexdigest()
    assert pseudonymize(key, "c-1042") == expected


@given(st.text(min_size=1, max_size=40), st.text(min_size=1, max_size=40))
def test_pseudonyms_are_stable_keyed_and_distinct(first: str, second: str) -> None:
    key_a, key_b = b"a" * 32, b"b" * 32
    assert pseudonymize(key_a, first) == pseudonymize(key_a, first)
    assert pseudonymize(key_a, first) != pseudonymize(key_b, first)
    if first != second:
        assert pseudonymize(key_a, first) != pseudonymize(key_a, second)


def test_pseudonym_key_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = ServiceSettings(data_dir=tmp_path)
    assert load_pseudonym_key(settings) == load_pseudonym_key(settings)
    assert len(load_pseudonym_key(settings)) == 32


def test_weak_pseudonym_key_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PseudonymKeyError, match="PSEUDONYM_KEY"):
        load_pseudonym_key(ServiceSettings(data_dir=tmp_path, pseudonym_key="changeme"))
    strong = ServiceSettings(data_dir=tmp_path, pseudonym_key="ab" * 32)
    assert load_pseudonym_key(strong) == bytes.fromhex("ab" * 32)

"""One API convention in every service: each `/v1` route asks for its scope one way, as its first
dependency (`Annotated[Principal, require_scope(...)]` from the service's `api/deps.py`), and a
refusal the service adds to FastAPI's own validation has FastAPI's shape (`shared.http.unprocessable`)."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute

from shared.auth import TokenRegistry
from shared.http import install_error_handlers, unprocessable

SERVICES = ("consent", "segmenter", "audit", "delivery")


def routes(service: str) -> Iterator[APIRoute]:
    """Every route of every router in the service's `api/` package."""
    package = importlib.import_module(f"services.{service}.api")
    for module in pkgutil.iter_modules(package.__path__):
        found = importlib.import_module(f"{package.__name__}.{module.name}")
        for router in [value for value in vars(found).values() if isinstance(value, APIRouter)]:
            yield from (route for route in router.routes if isinstance(route, APIRoute))


def is_scope_check(call: Callable[..., Any] | None) -> bool:
    return getattr(call, "__qualname__", "") == "require_scope.<locals>.check"


@pytest.mark.parametrize("service", SERVICES)
def test_every_v1_route_takes_its_scope_first_and_only_as_a_parameter(service: str) -> None:
    found = {route.path for route in routes(service)}
    assert any(path.startswith("/v1/") for path in found), found  # the routers were found
    for route in routes(service):
        # Not a router's or decorator's `dependencies=[...]`: those resolve before the
        # parameters, so two styles would order 403 differently against other refusals.
        assert not any(is_scope_check(d.dependency) for d in route.dependencies), route.path
        calls = [dependency.call for dependency in route.dependant.dependencies]
        scopes = [call for call in calls if is_scope_check(call)]
        if route.path.startswith("/v1/"):
            assert len(scopes) == 1 and is_scope_check(calls[0]), route.path
        else:  # the customer's own pages: a link's token lets the caller in
            assert scopes == [], route.path


async def test_a_service_refusal_is_shaped_like_fastapis_own() -> None:
    app = FastAPI()
    install_error_handlers(app)
    app.state.tokens = TokenRegistry({})

    @app.get("/thing")
    async def thing() -> None:
        raise unprocessable(["query", "rule"], "rule: unexpected ')'", position=4)

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/thing")
    assert response.status_code == 422
    refused = {"loc": ["query", "rule"], "msg": "rule: unexpected ')'", "type": "value_error", "position": 4}
    assert response.json() == {
        "detail": [refused],
        "status": 422,
        "message": "rule: unexpected ')'",
    }

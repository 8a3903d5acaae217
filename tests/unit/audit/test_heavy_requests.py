"""Heavy audit routes: at most AUDIT_HEAVY_REQUESTS at once, the next one a 503 with Retry-After."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import get_args

import httpx
from fastapi import FastAPI
from fastapi.routing import APIRoute

from services.audit.api import proofs, verify
from services.audit.api.deps import Heavy
from services.audit.api.heavy import HeavyRequests
from shared.http import install_error_handlers

BOUND = get_args(Heavy)[1].dependency


def test_every_proof_and_verify_route_is_bounded() -> None:
    bounded = {
        route.path
        for router in (proofs.router, verify.router)
        for route in router.routes
        if isinstance(route, APIRoute) and BOUND in [d.call for d in route.dependant.dependencies]
    }
    assert bounded == {"/v1/audit/records/{seq}/proof", "/v1/audit/consistency", "/v1/audit/verify"}


async def both_running(heavy: HeavyRequests) -> None:
    while heavy.free:
        await asyncio.sleep(0)


async def test_past_the_limit_a_request_is_refused_at_once_and_served_again_after() -> None:
    release = asyncio.Event()
    app = FastAPI()
    install_error_handlers(app)
    heavy = HeavyRequests(2)
    app.state.runtime = SimpleNamespace(heavy=heavy)  # what `Heavy` reads of the AuditRuntime

    @app.get("/slow")
    async def slow(_: Heavy) -> dict[str, bool]:
        await release.wait()
        return {"ok": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
        running = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await asyncio.wait_for(both_running(heavy), 10)
        refused = await client.get("/slow")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "retry" in refused.json()["message"]
        release.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]
        assert heavy.free == 2 and (await client.get("/slow")).status_code == 200

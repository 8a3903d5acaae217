"""Heavy audit routes: at most AUDIT_HEAVY_REQUESTS at once, the next one a 503 with Retry-After."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

from services.audit.api import proofs, verify
from services.audit.api.deps import HEAVY, HeavyRequests
from shared.http import install_error_handlers


def test_every_proof_and_verify_route_is_bounded() -> None:
    bounded = {
        route.path  # type: ignore[attr-defined]
        for router in (proofs.router, verify.router)
        for route in router.routes
        if HEAVY in route.dependencies  # type: ignore[attr-defined]
    }
    assert bounded == {"/v1/audit/records/{seq}/proof", "/v1/audit/consistency", "/v1/audit/verify"}


async def both_running(heavy: HeavyRequests) -> None:
    while heavy.free:
        await asyncio.sleep(0)


async def test_past_the_limit_a_request_is_refused_at_once_and_served_again_after() -> None:
    release = asyncio.Event()
    app = FastAPI()
    install_error_handlers(app)
    app.state.heavy = HeavyRequests(2)

    @app.get("/slow", dependencies=[HEAVY])
    async def slow() -> dict[str, bool]:
        await release.wait()
        return {"ok": True}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://audit") as client:
        running = [asyncio.create_task(client.get("/slow")) for _ in range(2)]
        await asyncio.wait_for(both_running(app.state.heavy), 10)
        refused = await client.get("/slow")
        assert refused.status_code == 503 and refused.headers["Retry-After"] == "1"
        assert "retry" in refused.json()["message"]
        release.set()
        assert [r.status_code for r in await asyncio.gather(*running)] == [200, 200]
        assert app.state.heavy.free == 2 and (await client.get("/slow")).status_code == 200

"""The shared HTTP conventions: refused inputs are never echoed, readiness reasons hold no message."""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import FastAPI, Path

from shared.http import Readiness, install_error_handlers

ADDRESS = "jane.doe@example.com"


def _app() -> FastAPI:
    app = FastAPI()
    install_error_handlers(app)

    @app.get("/v1/customers/{customer_id}")
    async def customer(customer_id: Annotated[str, Path(pattern=r"^[a-z0-9-]{1,16}$")]) -> dict[str, str]:
        return {"customer_id": customer_id}

    @app.get("/v1/page")
    async def page(limit: int = 10) -> dict[str, int]:
        return {"limit": limit}

    return app


async def _get(url: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.get(url)


async def test_a_refused_path_value_is_named_but_not_echoed() -> None:
    response = await _get(f"/v1/customers/{ADDRESS}")
    assert response.status_code == 422
    assert ADDRESS not in response.text
    [error] = response.json()["detail"]
    assert error["loc"] == ["path", "customer_id"] and error["type"] == "string_pattern_mismatch"
    assert "input" not in error


async def test_a_refused_query_value_is_not_echoed() -> None:
    response = await _get(f"/v1/page?limit={ADDRESS}")
    assert response.status_code == 422
    assert ADDRESS not in response.text
    assert response.json()["detail"][0]["loc"] == ["query", "limit"]


async def test_a_failing_readiness_check_reports_the_type_not_the_message() -> None:
    readiness = Readiness()

    async def store() -> str | None:
        raise ConnectionRefusedError(f"connecting to db.internal:5432 for {ADDRESS}")

    readiness.add("database", store)
    assert await readiness.reasons() == {"database": "database: ConnectionRefusedError"}

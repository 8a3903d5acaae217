"""`HttpDestinations`: the delivery service's destinations, for the RoPA's recipients."""

from __future__ import annotations

from typing import Any

import httpx

TIMEOUT_S = 3.0


class DestinationsUnavailableError(RuntimeError):
    """The delivery service did not answer usefully; the RoPA says so instead of failing."""


class HttpDestinations:
    def __init__(self, delivery_url: str, token: str) -> None:
        self.url = f"{delivery_url.rstrip('/')}/v1/destinations"
        self.headers = {"Authorization": f"Bearer {token}"}

    async def list(self) -> list[dict[str, Any]]:
        try:
            async with httpx.AsyncClient(headers=self.headers, timeout=TIMEOUT_S) as client:
                response = await client.get(self.url)
        except httpx.HTTPError as exc:
            raise DestinationsUnavailableError(f"{self.url}: {type(exc).__name__}") from exc
        body = response.json() if response.status_code == 200 else None
        destinations = body.get("destinations") if isinstance(body, dict) else None
        if not isinstance(destinations, list) or not all(isinstance(d, dict) for d in destinations):
            raise DestinationsUnavailableError(f"{self.url}: HTTP {response.status_code} or unexpected body")
        return destinations

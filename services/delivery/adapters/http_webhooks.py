"""HttpxWebhookSender: one POST per webhook on the client the runtime made."""

from __future__ import annotations

import asyncio

import httpx


class HttpxWebhookSender:
    def __init__(self, client: httpx.AsyncClient, timeout_s: float) -> None:
        self.client, self.timeout_s = client, timeout_s

    async def post(self, url: str, payload: bytes, headers: dict[str, str]) -> str | None:
        """None on a 2xx answer; otherwise the status or the transport error's type (never the body).

        httpx's timeout bounds each phase (connect, write, read) alone; the whole POST is bounded
        here too, so an attempt always ends within the lease of its webhook."""
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await self.client.post(url, content=payload, headers=headers)
        except (httpx.HTTPError, TimeoutError) as exc:
            return type(exc).__name__
        return None if response.is_success else f"HTTP {response.status_code}"

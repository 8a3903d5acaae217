"""HttpxWebhookSender: one POST per webhook on the client the runtime made."""

from __future__ import annotations

import httpx


class HttpxWebhookSender:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def post(self, url: str, payload: bytes, headers: dict[str, str]) -> str | None:
        """None on a 2xx answer; otherwise the status or the transport error's type (never the body)."""
        try:
            response = await self.client.post(url, content=payload, headers=headers)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return None if response.is_success else f"HTTP {response.status_code}"

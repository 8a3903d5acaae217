"""Database URL handling shared by the services that keep a SQL store (consent, audit)."""

from __future__ import annotations

_DRIVERLESS = ("postgresql://", "postgres://")


def driver_url(url: str) -> str:
    """`postgresql://` and `postgres://` (the contract's form) mean psycopg 3, the driver installed."""
    for plain in _DRIVERLESS:
        if url.startswith(plain):
            return "postgresql+psycopg://" + url[len(plain) :]
    return url

"""Who a preference link lets in: issue, open (intact, unexpired, not revoked) and revoke links."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from services.consent.preference.links import LinkClaims, PreferenceLinkError, PreferenceLinks
from services.consent.preference.store import SqlLinkGenerations
from shared.events import Jurisdiction
from shared.pseudonym import pseudonymize


class PreferenceAccess:
    def __init__(
        self, links: PreferenceLinks, generations: SqlLinkGenerations, pseudonym_key: bytes, ttl: int
    ) -> None:
        self.links = links
        self.generations = generations
        self.pseudonym_key = pseudonym_key
        self.ttl = timedelta(seconds=ttl)

    async def issue(
        self, customer_id: str, jurisdiction: Jurisdiction, policy_version: str, now: datetime
    ) -> tuple[str, datetime]:
        """A new token for the customer, and when it expires."""
        generation = await asyncio.to_thread(self.generations.current, self._subject(customer_id))
        expires = int((now + self.ttl).timestamp())
        claims = LinkClaims(customer_id, generation, jurisdiction, policy_version, expires)
        return self.links.issue(claims), claims.expires

    async def open(self, token: str, now: datetime) -> LinkClaims:
        """The claims of a token the page may act on; PreferenceLinkError names why not."""
        claims = self.links.open(token, now)
        current = await asyncio.to_thread(self.generations.current, self._subject(claims.customer_id))
        if claims.generation != current:
            raise PreferenceLinkError("revoked")
        return claims

    async def revoke(self, customer_id: str) -> None:
        """Every link issued to the customer so far stops working."""
        await asyncio.to_thread(self.generations.revoke, self._subject(customer_id))

    def _subject(self, customer_id: str) -> str:
        # Keyed by pseudonym: the table holds no customer id, so an erasure leaves nothing here.
        return pseudonymize(self.pseudonym_key, customer_id)

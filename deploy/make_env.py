#!/usr/bin/env python3
"""Print a .env for docker-compose.yml with fresh random secrets: python3 deploy/make_env.py > .env"""

import secrets

# Only what the services ask each other for (shared.auth.INTERNAL_SCOPES): the consent export
# and erasure receipt read the segmenter, the audit trail and where delivery sent the customer;
# the audit RoPA lists the destinations.
INTERNAL_SCOPES = "segments:read|audit:read|propagation:read|destinations:read"


def main() -> None:
    admin = secrets.token_urlsafe(24)
    internal = secrets.token_urlsafe(24)
    lines = [
        f"AUTH_TOKENS={admin}=*,{internal}={INTERNAL_SCOPES}",
        f"INTERNAL_TOKEN={internal}",
        f"PSEUDONYM_KEY={secrets.token_hex(32)}",
        f"POSTGRES_PASSWORD={secrets.token_hex(16)}",
        f"GRAFANA_ADMIN_PASSWORD={secrets.token_urlsafe(16)}",
    ]
    print("\n".join(lines))  # noqa: T201 - the output is the product


if __name__ == "__main__":
    main()

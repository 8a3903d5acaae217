"""Against running services configured as docker-compose.yml configures them (on PostgreSQL): every
metric that an alert rule or a dashboard reads is really exposed after some traffic."""

from __future__ import annotations

import pytest

from tests.deploy.metric_names import alert_exprs, dashboard_exprs, exposed_names, names_in
from tests.deploy.traffic import Stack, opt_out_traffic, start_stack, wait_until
from tests.support import http_client

pytestmark = pytest.mark.slow


def scrape_all(stack: Stack) -> set[str]:
    names: set[str] = set()
    for service in stack.services.values():
        response = http_client.get(f"{service.url}/metrics", timeout=10)
        response.raise_for_status()
        names |= exposed_names(response.text)
    return names


async def test_every_metric_in_alerts_and_dashboards_is_exposed_after_traffic(
    start_service, compose_env
) -> None:
    # Segment sizes are refreshed by the segmenter's sweep (30 s by default): sooner here.
    compose_env["segmenter"]["SEGMENTER_SWEEP_INTERVAL_S"] = "2"
    stack = start_stack(start_service, compose_env)
    await opt_out_traffic(stack)
    needed = names_in(alert_exprs() + dashboard_exprs())
    missing: set[str] = set()

    def all_exposed() -> bool:
        # Some gauges (lag, ledger length, checkpoint age) are set by periodic tasks: poll a while.
        missing.clear()
        missing.update(needed - scrape_all(stack))
        return not missing

    try:
        wait_until(all_exposed, 60, "every metric to be exposed", stack)
    except AssertionError:
        pytest.fail(f"not exposed by any running service: {sorted(missing)}")

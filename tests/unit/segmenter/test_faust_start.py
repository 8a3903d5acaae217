"""The segmenter's faust app starts without faust's one-second wait for late table definitions."""

from __future__ import annotations

import pytest
from faust.tables import TableManager

from services.segmenter.adapters.faust_transport import SegmenterFaustApp


class Recovery:
    def __init__(self) -> None:
        self.started = False

    async def start(self) -> None:
        self.started = True


async def test_the_table_manager_starts_recovery_without_a_grace_sleep(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = SegmenterFaustApp("segmenter-start", broker="kafka://127.0.0.1:9", web_enabled=False)
    tables, recovery, finalized = app.tables, Recovery(), []
    assert isinstance(tables, TableManager)

    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"the table manager slept {seconds} s at start")

    async def update_channels() -> None:
        finalized.append(True)

    monkeypatch.setattr(tables, "sleep", no_sleep)
    monkeypatch.setattr(tables, "_update_channels", update_channels)
    tables._recovery = recovery  # type: ignore[assignment]
    await tables.on_start()
    assert finalized == [True] and recovery.started


def test_a_table_defined_after_start_is_still_refused() -> None:
    app = SegmenterFaustApp("segmenter-late-table", broker="kafka://127.0.0.1:9", web_enabled=False)
    assert isinstance(app.tables, TableManager)
    app.tables._tables_finalized.set()  # what the start's _update_channels does first
    with pytest.raises(RuntimeError, match="Too late"):
        app.Table("late")

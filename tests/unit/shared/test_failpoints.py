"""Failpoints fire exactly where and as often as the setting says, and refuse unknown names."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from shared import failpoints
from shared.failpoints import FailpointSpecError, InjectedFaultError, failpoint
from shared.settings import ServiceSettings


@pytest.fixture(autouse=True)
def _disarm() -> Iterator[None]:
    yield
    failpoints.configure("")


def test_unarmed_failpoint_does_nothing() -> None:
    failpoint("segmenter.after_slot_commit")


def test_raise_fires_on_the_nth_hit_for_m_hits() -> None:
    failpoints.configure("segmenter.after_slot_commit=raise@2x2")
    fired = []
    for _ in range(5):
        try:
            failpoint("segmenter.after_slot_commit")
            fired.append(False)
        except InjectedFaultError:
            fired.append(True)
    assert fired == [False, True, True, False, False]


def test_injected_fault_is_retried_like_a_lost_connection() -> None:
    assert issubclass(InjectedFaultError, OSError)


@pytest.mark.parametrize("spec", ["nope=kill", "segmenter.after_slot_commit=explode", "x"])
def test_bad_spec_is_refused_naming_the_part(spec: str) -> None:
    with pytest.raises(FailpointSpecError, match="FAILPOINTS"):
        failpoints.parse(spec)


def test_settings_refuse_an_unknown_failpoint() -> None:
    with pytest.raises(ValueError, match="unknown failpoint"):
        ServiceSettings(failpoints="segmenter.no_such_step=kill")


def test_kill_ends_the_process_with_sigkill() -> None:
    code = (
        "from shared import failpoints; failpoints.configure('audit.mid_batch=kill');"
        "failpoints.failpoint('audit.mid_batch'); print('survived')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert done.returncode == -9
    assert "survived" not in done.stdout

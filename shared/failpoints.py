"""Failpoints: named steps where a test makes the process crash or fail, to prove recovery.

A guarantee holds only where a test injects the fault that would break it, so every step
whose crash could lose or duplicate something calls `failpoint("service.step")`. In
production the setting is empty and a call costs one dictionary lookup.

The `FAILPOINTS` setting lists `name=action[@n][xm]`, comma-separated:

- `kill`: SIGKILL this process (nothing is flushed, no `finally` runs), like a power cut;
- `raise`: raise `InjectedFaultError`, an `OSError`, so the step fails the way a dropped
  connection would and the caller's retry path runs;
- `@n`: fire on the n-th time the step is reached (default 1st), `xm`: m times in a row
  (default once).

For example `FAILPOINTS=segmenter.after_slot_commit=kill@3` kills the segmenter the third
time a batch has committed to Redis. The names in use are listed in `NAMES`.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from dataclasses import dataclass

# Every failpoint the code calls, so a misspelt setting fails at start instead of never firing.
NAMES = frozenset(
    {
        "segmenter.after_slot_commit",
        "segmenter.after_member_sync",
        "segmenter.after_publish",
        "segmenter.events_mid_batch",
        "segmenter.events_between_writes",
        "segmenter.consent_mid_batch",
        "segmenter.rebuild_mid_replay",
        "segmenter.rebuild_after_settle_commit",
        "segmenter.reevaluate_mid_batch",
        "consent.after_commit",
        "consent.requests_mid_batch",
        "consent.relay_publish",
        "audit.mid_batch",
        "audit.commit",
        "delivery.after_route",
        "delivery.after_ack",
    }
)
_SPEC = re.compile(r"^(?P<name>[a-z_.]+)=(?P<action>kill|raise)(?:@(?P<at>\d+))?(?:x(?P<times>\d+))?$")


class InjectedFaultError(OSError):
    """A failure injected by a failpoint (an OSError so it is retried like a lost connection)."""


class FailpointSpecError(ValueError):
    """The FAILPOINTS setting does not parse or names an unknown failpoint."""


@dataclass
class _Armed:
    action: str
    first: int
    times: int
    hits: int = 0


_armed: dict[str, _Armed] = {}
_lock = threading.Lock()


def parse(spec: str) -> dict[str, _Armed]:
    """The failpoints a FAILPOINTS value arms; FailpointSpecError naming the part that is wrong."""
    armed: dict[str, _Armed] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        match = _SPEC.match(part)
        if match is None:
            raise FailpointSpecError(f"FAILPOINTS: expected name=kill|raise[@n][xm], got {part!r}")
        name = match["name"]
        if name not in NAMES:
            known = ", ".join(sorted(NAMES))
            raise FailpointSpecError(f"FAILPOINTS: unknown failpoint {name!r} (known: {known})")
        armed[name] = _Armed(match["action"], int(match["at"] or 1), int(match["times"] or 1))
    return armed


def configure(spec: str) -> None:
    """Arm the failpoints of a FAILPOINTS value (empty disarms all); called by the entry point."""
    armed = parse(spec)
    with _lock:
        _armed.clear()
        _armed.update(armed)


def failpoint(name: str) -> None:
    """Reached step `name`: crash or fail here if a test armed it."""
    if not _armed:
        return
    with _lock:
        armed = _armed.get(name)
        if armed is None:
            return
        armed.hits += 1
        fire = armed.first <= armed.hits < armed.first + armed.times
    if not fire:
        return
    if armed.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    raise InjectedFaultError(f"failpoint {name} fired (hit {armed.hits})")

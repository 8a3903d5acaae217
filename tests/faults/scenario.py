"""A fault scenario end to end: the stack, the seeded workload, the collector, quiescence, the checks
and the summary."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.faults.collector import MembershipCollector
from tests.faults.invariants import Check, check, observe, violations
from tests.faults.model import SEGMENTS, ConsentHistory
from tests.faults.stack import ADMIN, FaultStack, Worker
from tests.faults.workload import Workload
from tests.support import wait_for

log = logging.getLogger(__name__)
STATE_CHECKS = 4  # the first checks describe the state, which converges; the rest are history


@dataclass
class Outcome:
    checks: list[Check]
    settled_after: float
    converged: bool
    notes: list[str] = field(default_factory=list)


class Scenario:
    def __init__(self, name: str, stack: FaultStack, seed: int, size: int = 30) -> None:
        self.name = name
        self.stack = stack
        self.seed = seed
        self.workload = Workload(stack, seed, size)
        topic = f"{stack.prefix}segment.membership"
        self.collector = MembershipCollector(stack.broker.bootstrap, topic)
        self.notes: list[str] = []
        self.early: list[str] = []  # violations found at a checkpoint
        self.workload.pause = self.settle

    # -- set-up ---------------------------------------------------------------------------------

    def start(self, segmenters: int = 1, consents: int = 1, failpoints: str = "") -> Scenario:
        """Consent first (it creates the consent topics), then the segmenters; segments defined."""
        for _ in range(consents):
            self.stack.start_consent()
        for _ in range(segmenters):
            self.stack.start_segmenter(failpoints)
        self.stack.wait_ready()
        self.define_segments(self.stack.segmenter)
        self.collector.start()
        self.stack.faults.add("stack ready, segments defined", fault=False)
        return self

    def define_segments(self, worker: Worker) -> None:
        with httpx.Client(base_url=worker.url, headers=ADMIN, timeout=10) as api:
            for spec in SEGMENTS:
                response = api.put(f"/v1/segments/{spec.segment_id}", json=spec.body())
                assert response.status_code == 200, response.text

    def note(self, text: str) -> None:
        self.notes.append(text)

    def expect_killed(self, worker: Worker, name: str, timeout: float = 60.0) -> None:
        """The armed kill fired (else the scenario proved nothing) and the watcher restarted it."""

        # A re-armed kill (it left nothing in flight) may fire again only with phase 2's traffic.
        def fired() -> bool:
            return worker.kills >= 1 or worker.rearms >= 1

        wait_for(fired, timeout, f"failpoint {name} to SIGKILL {worker.service.name}")

    def recovered(self, worker: Worker, name: str) -> None:
        """Between phases: the kill fired, the restarted stack settled (checked as a checkpoint),
        so phase 2's opt-outs meet members that joined before the crash."""
        self.expect_killed(worker, name)
        self.checkpoint("after the restart")

    def checkpoint(self, label: str) -> None:
        """Settle now and keep what is broken; `verify` fails on it too."""
        outcome = self.settle()
        broken = sum(len(c.violations) for c in outcome.checks)
        self.note(f"checkpoint {label}: settled in {outcome.settled_after:.1f}s, {broken} violations")
        for c in outcome.checks:
            self.early.extend(f"[{label}] {c.name}: {v}" for v in c.violations)

    def raised(self, worker: Worker, name: str) -> int:
        """How often the worker's log shows the injected error (0 when a task died without a log)."""
        text = worker.service.log_path.read_text(errors="replace")
        count = text.count(f"failpoint {name} fired") or text.count("InjectedFaultError")
        self.note(f"{name} raise: {count} log lines show the injected error")
        return count

    # -- quiescence -----------------------------------------------------------------------------

    def read_history(self) -> None:
        """The consent service's own history of every customer of the workload."""
        worker = wait_for(lambda: next((w for w in self.stack.consents if w.alive()), None), 30, "a consent")
        with httpx.Client(base_url=worker.url, headers=ADMIN, timeout=10) as api:
            for customer in self.workload.customers:
                response = api.get(f"/v1/customers/{customer}/consents/history")
                response.raise_for_status()
                model = self.workload.model
                model.history[customer] = ConsentHistory.parse(response.json()["history"], model.windows)

    def settle(self, timeout: float = 45.0, quiet: float = 6.0) -> Outcome:
        """Wait until the state equals the model, or until it stops changing for `quiet` seconds."""
        started = time.monotonic()
        self.stack.faults.add("inputs sent; waiting for quiescence", fault=False)
        self.stack.wait_ready()
        self.read_history()
        last, since = None, time.monotonic()
        while True:
            checks = self._checks()
            state_ok = violations(checks[:STATE_CHECKS]) == 0
            signature = self._observed.signature()
            now = time.monotonic()
            if signature != last:
                last, since = signature, now
            if state_ok or now - since >= quiet or now - started >= timeout:
                return Outcome(checks, now - started, state_ok, self.notes)
            time.sleep(0.3)

    def _checks(self) -> list[Check]:
        segmenter = next((w for w in self.stack.segmenters if w.managed and w.alive()), None)
        with self.stack.redis.client() as client:
            self._observed = observe(
                client,
                segmenter.url if segmenter else None,
                self.stack.prefix,
                self.workload.customers,
                self.collector.messages(),
            )
        return check(self.workload.model, self._observed)

    # -- report ---------------------------------------------------------------------------------

    def verify(self, outcome: Outcome | None = None) -> Outcome:
        """Settle, print the summary, and fail naming every broken invariant."""
        outcome = outcome or self.settle()
        exits = Check("no process exited unless a fault killed it", "processes")
        exits.checked, exits.violations = len(self.stack.workers()), list(self.stack.unexpected)
        outcome.checks.append(exits)
        summary = self.summary(outcome)
        broken = [c for c in outcome.checks if c.violations]
        if self.early:
            broken.append(Check("at a checkpoint", "", len(self.early), self.early))
        details = "".join(f"\n  {c.name}:\n    " + "\n    ".join(c.violations[:8]) for c in broken)
        report = f"{summary}\n  violations:{details}{self._histories(broken)}" if broken else summary
        sys.stdout.write("\n" + report + "\n")
        (self.stack.tmp / "summary.txt").write_text(report + "\n")
        log.info("%s", report)
        assert not broken, f"{report}\n\nlogs in {self.stack.tmp}"
        return outcome

    def _histories(self, broken: list[Check], most: int = 3) -> str:
        """The consent history of the first customers a violation names, to read beside it."""
        named = [c for c in self.workload.customers if any(c in v for b in broken for v in b.violations)]
        lines = []
        for customer in named[:most]:
            history = self.workload.model.history.get(customer, ConsentHistory([]))
            rows = [
                f"{r.sequence or '-'}:{r.purpose}={r.status}({r.reason})@{r.recorded_at.time()}"
                for r in history.records
            ]
            lines.append(f"\n    {customer}: " + ", ".join(rows))
        return "\n  consent history of the first customers named:" + "".join(lines) if lines else ""

    def summary(self, outcome: Outcome) -> str:
        counts = self.workload.counts
        announced = self.collector.messages()
        joins = sum(m.action == "joined" for m in announced)
        lines = [
            f"fault scenario {self.name}: seed {self.seed} (FAULT_SEED to change)",
            f"  workload: {len(self.workload.customers)} customers, {counts.events} events "
            f"({counts.redeliveries} redelivered), {counts.consent_puts} consent choices, "
            f"{counts.bursts} bursts, {counts.unpublished_answers} answered unpublished; "
            f"announced {len(announced)} ({joins} joined, "
            f"{self.collector.read - len(announced)} duplicate records)",
            self._answer_times(),
            f"  timeline ({self.stack.faults.count()} faults, marked !):",
            *(f"    {entry}" for entry in self.stack.faults.entries),
            *(f"  note: {n}" for n in outcome.notes),
            f"  quiescence: {'reached' if outcome.converged else 'NOT reached (state stopped changing)'}"
            f" after {outcome.settled_after:.1f}s",
            f"  {'invariant':<46} {'checked':>14} {'violations':>10}",
        ]
        for c in outcome.checks:
            lines.append(f"  {c.name:<46} {c.checked:>5} {c.unit:<8} {len(c.violations):>10}")
        return "\n".join(lines)

    def _answer_times(self) -> str:
        """How long consent PUTs took to answer (commit and publication inside): the window in
        which a join may still be announced after the choice it races was committed. Reported,
        not asserted (it follows the machine's load)."""
        took = sorted(
            (answered - sent).total_seconds() * 1000
            for sent, answered in self.workload.model.windows.values()
        )
        if not took:
            return "  consent PUTs: none answered"
        return f"  consent PUTs sent to answered: p50 {took[len(took) // 2]:.0f} ms, max {took[-1]:.0f} ms"

    def close(self) -> None:
        self.collector.stop()
        self.workload.close()


def log_path(tmp: Path) -> Path:
    return tmp / "summary.txt"

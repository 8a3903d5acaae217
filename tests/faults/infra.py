"""A scenario's own broker, a Tansu broker that a fault may restart (its Redis: tests.support.OwnRedis)."""

from __future__ import annotations

from pathlib import Path

from shared.embedded import EmbeddedBroker


class OwnBroker:
    """The embedded Tansu broker on a fixed port: a restart forgets every topic but keeps the address."""

    def __init__(self, log_path: Path) -> None:
        self.broker = EmbeddedBroker(log_path=log_path)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def start(self) -> OwnBroker:
        self.broker.start()
        return self

    def stop(self) -> None:
        self.broker.stop()

    def restart(self) -> None:
        self.broker.stop()
        self.broker.start()

"""The benchmark's peer: Quix Streams doing the segmenter's comparable work on the same records.

Run by bench_segmenter.py with the interpreter of a venv that has quixstreams (a bench-only
dependency: it pins its own pydantic, so it is kept out of the project's venv; QUIX_PYTHON).
Per customer it keeps the features the bench's rules read in its RocksDB state, evaluates 20
threshold rules after each event and produces a membership change for every rule whose outcome
flipped. It does no consent gating and shares no state between workers: a peer, not an equal.
Prints one JSON line: {"events": N, "seconds": S, "events_per_s": R, "changes": C}.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from typing import Any

from quixstreams import Application, State

RULES = [("total_spend", i * 40.0, "views", i % 5) for i in range(20)]


def main(bootstrap: str, source: str, sink: str, count: int) -> None:
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"{source}.peer",
        auto_offset_reset="earliest",
        state_dir=tempfile.mkdtemp(prefix="segwarden-peer-"),
        use_changelog_topics=False,  # the segmenter's Redis has no changelog either
    )
    events = app.topic(source, value_deserializer="json", key_deserializer="str")
    changes = app.topic(sink, value_serializer="json")
    # The embedded broker reports no retention.ms; Quix reads it to size a changelog (unused here).
    events.broker_config.extra_config.setdefault("retention.ms", "-1")
    seen = {"n": 0, "first": 0.0, "last": 0.0, "changes": 0}

    def evaluate(event: dict[str, Any], state: State) -> list[dict[str, Any]]:
        now = time.perf_counter()
        seen["first"] = seen["first"] or now
        features = state.get("f", {"events": 0, "total_spend": 0.0, "views": 0, "members": []})
        features["events"] += 1
        if event["type"] == "purchase":
            features["total_spend"] += float(event["attributes"]["amount"])
        elif event["type"] == "view":
            features["views"] += 1
        before = set(features["members"])
        after = {i for i, (f, at, g, n) in enumerate(RULES) if features[f] >= at and features[g] >= n}
        features["members"] = sorted(after)
        state.set("f", features)
        out = [
            {"customer_id": event["customer_id"], "segment": i, "joined": i in after} for i in before ^ after
        ]
        seen["changes"] += len(out)
        seen["n"] += 1
        if seen["n"] >= count:
            seen["last"] = time.perf_counter()
            app.stop()
        return out

    app.dataframe(events).apply(evaluate, stateful=True, expand=True).to_topic(changes)
    app.run()
    seconds = seen["last"] - seen["first"]
    rate = (seen["n"] - 1) / seconds if seconds > 0 else 0.0
    line = {"events": seen["n"], "seconds": seconds, "events_per_s": rate, "changes": seen["changes"]}
    sys.stdout.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))

"""Model-based segments benchmark: the cost of placing one customer in a cluster online, beside
evaluating a compiled rule segment on the same customers in the same run.

Per customer, from the feature mapping the segmenter already builds for its rules:
- rule: a compiled RFM-like rule of the segmenter's rule language (`CompiledRule.matches`);
- model: `ModelAssigner.assign` (minimized vector + compiled model + metric), per algorithm;
- predict: scikit-learn's `Pipeline.predict` on one row, the cost `assign` avoids;
- features: `rule_features` (stored hash -> mapping), paid once per event by both kinds of segment.
Also: training time and the verified load of a stored model. In-process only: no broker is
involved in assignment, so none is started.

Run: `.venv/bin/python bench/bench_modeling.py` (or `make bench`). JSON goes to bench/results/.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from services.segmenter.domain.features import rule_features  # noqa: E402
from services.segmenter.modeling.assign import ModelAssigner  # noqa: E402
from services.segmenter.modeling.store import FileModelStore  # noqa: E402
from services.segmenter.modeling.synthetic import population  # noqa: E402
from services.segmenter.modeling.training import TrainingSpec, feature_matrix, train  # noqa: E402
from services.segmenter.rules import compile_rule  # noqa: E402

CUSTOMERS_PER_GROUP = 2000
PREDICT_SAMPLE = 500
REPEATS = 5
RULE = "total_spend >= 1000 and purchase_count >= 10 and last_purchase_days <= 14"
GRANTED = frozenset({"profiling", "marketing_email"})
DAY = 86400.0


def stored_hash(features: Mapping[str, float | int], now: float) -> dict[str, str]:
    """The segmenter's stored feature hash that gives these features (see domain/features.py)."""
    stored = {
        "spend": repr(float(features["total_spend"])),
        "purchases": str(features["purchase_count"]),
        "events": str(features["event_count"]),
        "first": repr(now - features["first_seen_days"] * DAY),
        "last": repr(now - features["last_seen_days"] * DAY),
        "e:page_view": str(features["events.page_view"]),
        "p:country": '"DE"',
    }
    if "last_purchase_days" in features:
        stored["lastp"] = repr(now - features["last_purchase_days"] * DAY)
        stored["e:purchase"] = str(features["events.purchase"])
    return stored


def per_call_ns(call: Callable[[Any], object], inputs: Sequence[Any]) -> float:
    """Median over REPEATS runs of the mean nanoseconds per call."""
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter_ns()
        for item in inputs:
            call(item)
        runs.append((time.perf_counter_ns() - start) / len(inputs))
    return statistics.median(runs)


def bench_algorithm(algorithm: str, samples: Any, mappings: list[Any], directory: Path) -> dict[str, Any]:
    started = time.perf_counter()
    model = train(TrainingSpec(f"bench-{algorithm}", 3, algorithm), samples)
    trained_s = time.perf_counter() - started
    store = FileModelStore(directory, b"bench-key-" * 4)
    store.save(model.metadata, model.pipeline)
    assigner = ModelAssigner(store)
    started = time.perf_counter()
    assigner.refresh()
    loaded_s = time.perf_counter() - started
    model_id = model.metadata.id
    rows = [samples[i : i + 1] for i in range(PREDICT_SAMPLE)]
    return {
        "train_s": round(trained_s, 3),
        "verified_load_s": round(loaded_s, 4),
        "assign_ns": per_call_ns(lambda f: assigner.assign(model_id, f, GRANTED), mappings),
        "predict_ns": per_call_ns(model.pipeline.predict, rows),
    }


def run() -> dict[str, Any]:
    now = time.time()
    people = population(CUSTOMERS_PER_GROUP, seed=1)
    stored = [stored_hash(features, now) for _, features in people]
    mappings = [rule_features(s, now) for s in stored]
    samples = feature_matrix(mappings)
    rule = compile_rule(RULE)
    results: dict[str, Any] = {
        "machine": f"{platform.node()} ({os.cpu_count()} cores, Python {platform.python_version()})",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "customers": len(people),
        "rule": RULE,
        "rule_ns": per_call_ns(rule.matches, mappings),
        "features_ns": per_call_ns(lambda s: rule_features(s, now), stored),
    }
    with tempfile.TemporaryDirectory(prefix="segwarden-bench-modeling-") as tmp:
        results["models"] = {
            algorithm: bench_algorithm(algorithm, samples, mappings, Path(tmp))
            for algorithm in ("kmeans", "minibatch", "gmm")
        }
    return results


def report(results: dict[str, Any]) -> None:
    rule_ns = results["rule_ns"]
    lines = [
        f"modeling bench on {results['machine']} at {results['at']}, {results['customers']:,} customers",
        f"  rule segment   {rule_ns / 1000:7.2f} us/customer  ({results['rule']})",
        f"  rule_features  {results['features_ns'] / 1000:7.2f} us/customer  (hash -> mapping, both)",
    ]
    for algorithm, m in results["models"].items():
        assign, predict = m["assign_ns"], m["predict_ns"]
        lines.append(
            f"  {algorithm:9s}      {assign / 1000:7.2f} us/customer  = {assign / rule_ns:4.1f}x the rule;"
            f" Pipeline.predict {predict / 1000:6.1f} us ({predict / assign:.0f}x);"
            f" train {m['train_s']:.2f} s, verified load {m['verified_load_s'] * 1000:.1f} ms"
        )
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    results = run()
    report(results)
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_modeling.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

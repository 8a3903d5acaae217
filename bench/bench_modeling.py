"""Model-based segments benchmark: the cost of placing one customer in a cluster online, beside
evaluating a compiled rule segment on the same customers in the same run.

Per customer, from the feature mapping the segmenter already builds for its rules:
- rule: a compiled RFM-like rule of the segmenter's rule language (`CompiledRule.matches`);
- model: `ModelAssigner.assign` (minimized vector + compiled model + metric), per algorithm;
- predict: scikit-learn's `Pipeline.predict` on one row, the cost `assign` avoids;
- features: `rule_features` (stored hash -> mapping), paid once per event by both kinds of segment.
Also: training time and the verified load of a stored model. In-process only: no broker is
involved in assignment, so none is started.

Run: `.venv/bin/python -m bench.bench_modeling` (or `make bench`). JSON goes to bench/results/.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from bench.common import run_facts, write_results
from services.segmenter.domain.feature_values import rule_features
from services.segmenter.modeling.assign import ModelAssigner
from services.segmenter.modeling.store import FileModelStore
from services.segmenter.modeling.synthetic import population
from services.segmenter.modeling.training import TrainingSpec, feature_matrix, train
from services.segmenter.rules import compile_rule

CUSTOMERS_PER_GROUP = 2000
PREDICT_SAMPLE = 500
REPEATS = 7
ALGORITHMS = ("kmeans", "minibatch", "gmm")
RULE = "total_spend >= 1000 and purchase_count >= 10 and last_purchase_days <= 14"
GRANTED = frozenset({"profiling", "marketing_email"})
DAY = 86400.0


def stored_hash(features: Mapping[str, float | int], now: float) -> dict[str, str]:
    """The segmenter's stored feature hash that gives these features (see domain/feature_values.py)."""
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


def mean_ns(call: Callable[[Any], object], inputs: Sequence[Any]) -> float:
    start = time.perf_counter_ns()
    for item in inputs:
        call(item)
    return (time.perf_counter_ns() - start) / len(inputs)


def interleaved(calls: dict[str, Callable[[Any], object]], inputs: Sequence[Any]) -> dict[str, list[float]]:
    """Per-call nanoseconds of each candidate, REPEATS times, taking turns so all see the same load."""
    runs: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(REPEATS):
        for name, call in calls.items():
            runs[name].append(mean_ns(call, inputs))
    return runs


def trained_assigners(samples: Any, directory: Path) -> tuple[ModelAssigner, dict[str, Any]]:
    store = FileModelStore(directory, b"bench-key-" * 4)
    facts: dict[str, Any] = {}
    for algorithm in ALGORITHMS:
        started = time.perf_counter()
        model = train(TrainingSpec(algorithm, 3, algorithm), samples)
        facts[algorithm] = {"train_s": round(time.perf_counter() - started, 3), "pipeline": model.pipeline}
        store.save(model.metadata, model.pipeline)
    assigner = ModelAssigner(store)
    started = time.perf_counter()
    assigner.refresh()
    facts["verified_load_all_s"] = round(time.perf_counter() - started, 4)
    return assigner, facts


def run() -> dict[str, Any]:
    now = time.time()
    people = population(CUSTOMERS_PER_GROUP, seed=1)
    stored = [stored_hash(features, now) for _, features in people]
    mappings = [rule_features(s, now) for s in stored]
    samples = feature_matrix(mappings)
    rule = compile_rule(RULE)
    with tempfile.TemporaryDirectory(prefix="segwarden-bench-modeling-") as tmp:
        assigner, facts = trained_assigners(samples, Path(tmp))
    calls: dict[str, Callable[[Any], object]] = {"rule": rule.matches}
    calls.update({a: partial(assigner.assign, a, granted=GRANTED) for a in ALGORITHMS})
    runs = interleaved(calls, mappings)
    rows = [samples[i : i + 1] for i in range(PREDICT_SAMPLE)]
    return {
        **run_facts(),
        "load_average_1m": os.getloadavg()[0],
        "customers": len(people),
        "repeats": REPEATS,
        "rule": RULE,
        "rule_ns": statistics.median(runs["rule"]),
        "features_ns": statistics.median(mean_ns(lambda s: rule_features(s, now), stored) for _ in range(3)),
        "verified_load_all_s": facts["verified_load_all_s"],
        "models": {a: model_figures(runs, a, facts[a], rows) for a in ALGORITHMS},
    }


def model_figures(runs: dict[str, list[float]], algorithm: str, facts: dict[str, Any], rows: list) -> dict:
    return {
        "assign_ns": statistics.median(runs[algorithm]),
        "ratio_to_rule": statistics.median(m / r for m, r in zip(runs[algorithm], runs["rule"], strict=True)),
        "predict_ns": statistics.median(mean_ns(facts["pipeline"].predict, rows) for _ in range(3)),
        "train_s": facts["train_s"],
    }


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
            f"  {algorithm:9s}      {assign / 1000:7.2f} us/customer  = {m['ratio_to_rule']:4.1f}x the rule,"
            f" predict() {predict / 1000:6.1f} us ({predict / assign:.0f}x), train {m['train_s']:.2f} s"
        )
    lines.append(
        f"  verified load of the 3 models {results['verified_load_all_s'] * 1000:.1f} ms;"
        f" load average {results['load_average_1m']:.1f} (medians of {results['repeats']} interleaved runs)"
    )
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    results = run()
    report(results)
    write_results("bench_modeling", results)


if __name__ == "__main__":
    main()

"""A one-page PNG a marketer can read: customers on two principal components, and each cluster's profile.

Built on matplotlib's object API with the Agg canvas: no pyplot global state, no display needed.
"""

from __future__ import annotations

import io

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from services.segmenter.modeling.feature_vector import FEATURES, RECENCY_CAP_DAYS
from services.segmenter.modeling.training import TrainedModel

LABELS = {
    "recency_days": "Days since last purchase",
    "inactivity_days": "Days since last visit",
    "frequency": "Purchases",
    "monetary": "Total spend",
    "avg_order_value": "Spend per purchase",
    "tenure_days": "Days as a customer",
    "purchase_share": "Share of events that are purchases",
}
# The scatter is binned on a grid of at most this many cells a side (fewer for few customers);
# a cell is drawn only when it holds at least `min_cluster_size` customers of one cluster
# (K_ANONYMITY), so the report shows groups, never one customer's point (which would outlive
# their erasure in the PNG).
GRID = 40


def render_report(model: TrainedModel) -> bytes:
    """The report of a trained model as PNG bytes."""
    figure = Figure(figsize=(15, 8.5), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(4, 4, width_ratios=[2.4, 1, 1, 1])
    colours = _colours(model.metadata.clusters)
    _scatter(figure.add_subplot(grid[:, 0]), model, colours)
    for index, feature in enumerate(FEATURES):
        _profile(figure.add_subplot(grid[index // 3, 1 + index % 3]), model, feature, colours)
    _notes(figure.add_subplot(grid[3, 1:]), model)
    figure.suptitle(_title(model), fontsize=14)
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _colours(k: int) -> list[tuple[float, float, float, float]]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return [palette(i % 10) for i in range(k)]


def _title(model: TrainedModel) -> str:
    meta = model.metadata
    quality = "n/a" if meta.silhouette is None else f"{meta.silhouette:.2f}"
    return (
        f"Model {meta.id}: {meta.clusters} clusters ({meta.algorithm}) of {meta.n_training} customers "
        f"with {meta.purpose} consent; silhouette {quality} (1 = clearly apart, 0 = overlapping)"
    )


def _scatter(axes: Axes, model: TrainedModel, colours: list) -> None:
    scaled = model.pipeline["scale"].transform(model.samples)
    pca = PCA(n_components=2, random_state=0).fit(scaled)
    points = pca.transform(scaled)
    centres = pca.transform(model.pipeline["scale"].transform(_centre_rows(model)))
    minimum = max(model.metadata.min_cluster_size, 2)
    for cluster, colour in enumerate(colours):
        x, y, counts = grouped_cells(points, model.labels == cluster, minimum)
        size = model.metadata.cluster_sizes[cluster]
        axes.scatter(
            x,
            y,
            s=8 + 40 * counts / max(counts.max(initial=1), 1),
            marker="s",
            alpha=0.5,
            color=colour,
            label=f"cluster {cluster} ({size})",
        )
        axes.scatter(
            centres[cluster, 0], centres[cluster, 1], s=260, marker="X", color=colour, edgecolor="black"
        )
    share = pca.explained_variance_ratio_
    axes.set_xlabel(f"first principal component ({share[0]:.0%} of the variation)")
    axes.set_ylabel(f"second principal component ({share[1]:.0%} of the variation)")
    axes.set_title(f"Customers by cluster, in cells of at least {minimum} (X: each cluster's centre)")
    axes.legend(loc="best", fontsize=9)


def grouped_cells(
    points: np.ndarray, mine: np.ndarray, minimum: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centres and counts of the grid cells holding at least `minimum` of the `mine` points (one
    grid over all points, so the clusters' cells line up)."""
    side = int(min(GRID, max(4, np.sqrt(len(points) / minimum))))
    edges = [np.linspace(points[:, i].min(), points[:, i].max() + 1e-9, side + 1) for i in (0, 1)]
    counts, x_edges, y_edges = np.histogram2d(points[mine, 0], points[mine, 1], bins=edges)
    kept = np.argwhere(counts >= minimum)
    x = (x_edges[kept[:, 0]] + x_edges[kept[:, 0] + 1]) / 2
    y = (y_edges[kept[:, 1]] + y_edges[kept[:, 1] + 1]) / 2
    return x, y, counts[kept[:, 0], kept[:, 1]]


def _centre_rows(model: TrainedModel) -> np.ndarray:
    return np.array([[centre[f] for f in FEATURES] for centre in model.metadata.centers])


def _profile(axes: Axes, model: TrainedModel, feature: str, colours: list) -> None:
    values = [centre[feature] for centre in model.metadata.centers]
    bars = axes.bar(range(len(values)), values, color=colours)
    axes.bar_label(bars, labels=[_short(v) for v in values], fontsize=8)
    axes.set_xticks(range(len(values)), [str(c) for c in range(len(values))])
    axes.set_xlabel("cluster", fontsize=8)
    axes.set_title(LABELS[feature], fontsize=10)
    axes.margins(y=0.2)


def _notes(axes: Axes, model: TrainedModel) -> None:
    meta = model.metadata
    lines = [f"Trained {meta.created_at:%Y-%m-%d %H:%M} UTC on minimized features only (no identifiers)."]
    lines.append(
        f"{RECENCY_CAP_DAYS:.0f} days since the last purchase or visit means none in a year, or never."
    )
    lines.append(f"Cluster sizes: {', '.join(f'{c}: {n}' for c, n in enumerate(meta.cluster_sizes))}.")
    if meta.k_reason:
        lines.append(f"Number of clusters chosen automatically: {meta.k_reason}.")
        scored = ", ".join(
            f"K={k}: {'-' if s is None else f'{s:.2f}'}" for k, s in (meta.k_scores or {}).items()
        )
        lines.append(f"Silhouette per K: {scored}.")
    axes.axis("off")
    axes.text(0, 0.9, "\n".join(lines), va="top", fontsize=9, wrap=True)


def _short(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.2g}" if abs(value) < 1 else f"{value:.1f}"

"""The report is a readable PNG of the right size, drawn from the model alone."""

from __future__ import annotations

import io

import numpy as np
from matplotlib import image

from services.segmenter.modeling.report import grouped_cells, render_report
from services.segmenter.modeling.training import TrainedModel

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_the_report_is_a_png_that_decodes_with_its_clusters_in_colour(trained: TrainedModel) -> None:
    png = render_report(trained)
    assert png.startswith(PNG_SIGNATURE)
    pixels = image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (850, 1500)
    # More than black, white and greys: the clusters are coloured.
    rgb = pixels[..., :3]
    assert (rgb.max(axis=-1) - rgb.min(axis=-1) > 0.3).sum() > 1000


def test_the_scatter_draws_only_cells_of_at_least_the_minimum_cluster_size() -> None:
    """No point of one customer is drawn: a cell below the minimum (K_ANONYMITY) is left out."""
    rng = np.random.default_rng(1)
    crowd = rng.normal(0, 0.01, size=(30, 2))
    loner = np.array([[5.0, 5.0]])
    points = np.vstack([crowd, loner])
    x, y, counts = grouped_cells(points, np.ones(len(points), dtype=bool), minimum=10)
    assert counts.min() >= 10 and counts.sum() == 30
    assert not ((x > 4) & (y > 4)).any()

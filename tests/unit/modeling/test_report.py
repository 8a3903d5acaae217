"""The report is a readable PNG of the right size, drawn from the model alone."""

from __future__ import annotations

import io

from matplotlib import image

from services.segmenter.modeling.report import render_report
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

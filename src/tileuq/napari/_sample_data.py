"""npe2 sample-data contribution: the bundled Aperio slide ``CMU-1-Small-Region.svs``."""

from __future__ import annotations

from tileuq.layers.slide import LayerDataTuple, slide_layer_data


def sample_slide() -> list[LayerDataTuple]:
    """Open the bundled sample slide (H&E skin, 2220x2967 px at 0.499 µm/px) as a layer."""
    from tileuq.slide import open_slide, sample_slide_path

    return slide_layer_data(open_slide(sample_slide_path()), name="CMU-1-Small-Region")

"""Repaint the rejected-region layer for a new threshold, fast (the slider's hot path).

:class:`LiveMask` holds a :class:`tileuq.layers.RejectionGrid` (per-tile grid indices computed
once) and the viewer's *rejected* labels layer of one session; :meth:`LiveMask.paint` only
recomputes the mask and sets ``layer.data``.  ``benchmarks/gui.py`` times exactly this call.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tileuq.napari._common import Session, add_or_replace, session_layers


def session_geometry(viewer: Any, session: Session) -> Any:
    """Return the grid geometry of ``session`` as shown (its class layer's), else computed."""
    from tileuq.layers import TileGeometry

    layers = session_layers(viewer, session, "classes")
    if layers:
        return TileGeometry.from_dict(layers[0].metadata["tileuq"]["geometry"])
    return TileGeometry.from_results(session.results)


class LiveMask:
    """The rejected-region layer of ``session`` under ``rules`` (a calibration's rules)."""

    def __init__(self, viewer: Any, session: Session, rules: Any) -> None:
        from tileuq.layers import RejectionGrid

        self.viewer = viewer
        self.session = session
        self.geometry = session_geometry(viewer, session)
        self.grid = RejectionGrid(session.results.table, rules, self.geometry)

    @property
    def thresholds(self) -> dict[str, float]:
        """Current threshold per score."""
        return self.grid.thresholds

    def layer(self) -> Any:
        """Return the session's rejected layer (created, empty, when missing)."""
        layers = session_layers(self.viewer, self.session, "rejected")
        if layers:
            return layers[0]
        from tileuq.layers import rejected_layer

        tup = rejected_layer(self.session.results.table.iloc[:0], [], self.geometry,
                             metadata={"source": self.session.key})  # fmt: skip
        return add_or_replace(self.viewer, [tup])[0]

    def paint(self, thresholds: dict[str, float]) -> Any:
        """Recompute the mask for ``thresholds`` and show it; returns the layer.

        The mask is written into the layer's own array and only the view is refreshed (no
        thumbnail, extent or highlight update: :meth:`finish` does those once the slider rests);
        this is about 3x cheaper in napari than assigning ``layer.data``.
        """
        layer = self.layer()
        data = layer.data
        if (
            isinstance(data, np.ndarray)
            and data.shape == self.geometry.shape
            and data.dtype == np.uint8
            and data.flags.writeable
        ):
            self.grid.paint(thresholds, out=data)
            try:
                layer.refresh(thumbnail=False, extent=False, highlight=False)
            except TypeError:  # napari < 0.6: refresh() takes no options
                layer.refresh()
        else:
            layer.data = self.grid.paint(thresholds)
        return layer

    def finish(self) -> None:
        """Full refresh (thumbnail included) after a series of :meth:`paint` calls."""
        layers = session_layers(self.viewer, self.session, "rejected")
        if layers:
            layers[0].refresh()

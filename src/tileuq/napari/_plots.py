"""Matplotlib canvas for the calibrate widget: score histogram and risk–coverage curve."""

from __future__ import annotations

from typing import Any

import numpy as np

BG = "#262930"  # napari's dark theme background
FG = "#d6d6d6"


class ThresholdPlot:
    """Two small axes in a Qt canvas: histogram + threshold line, risk–coverage + point."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(4.6, 2.3), dpi=90, facecolor=BG, layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        self.hist_ax, self.rc_ax = self.figure.subplots(1, 2)
        self._line: Any = None
        self._point: Any = None
        self._background: Any = None
        self.canvas.mpl_connect("draw_event", self._on_draw)
        for ax in (self.hist_ax, self.rc_ax):
            self._style(ax)

    @staticmethod
    def _style(ax: Any) -> None:
        ax.set_facecolor(BG)
        ax.tick_params(colors=FG, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(FG)
        ax.xaxis.label.set_color(FG)
        ax.yaxis.label.set_color(FG)
        ax.title.set_color(FG)

    def draw(self, score: str, hist: dict[str, Any], rc: dict[str, Any] | None) -> None:
        """Redraw both panels."""
        h = self.hist_ax
        h.clear()
        self._style(h)
        edges = hist["edges"]
        centres = (edges[:-1] + edges[1:]) / 2
        width = float(edges[1] - edges[0])
        h.bar(centres, hist["slide"], width=width, color="#8fa6ff", alpha=0.8, label="slide")
        if "calibration" in hist:
            h.step(centres, hist["calibration"], where="mid", color="#ffb000", lw=1.2,
                   label="calibration")  # fmt: skip
        self._line = None
        if hist.get("threshold") is not None:  # animated: drawn by blitting (move_threshold)
            self._line = h.axvline(hist["threshold"], color="#ff4d6d", lw=1.5, animated=True)
        h.set_title(f"{score} (larger = less sure)", fontsize=8)
        h.set_yticks([])
        h.legend(fontsize=6, frameon=False, labelcolor=FG)
        r = self.rc_ax
        r.clear()
        self._style(r)
        self._point = None
        if rc is None or len(rc["coverage"]) == 0:
            r.text(0.5, 0.5, "load labelled\ncalibration data\nfor the risk curve", ha="center",
                   va="center", color=FG, fontsize=7, transform=r.transAxes)  # fmt: skip
            r.set_xticks([])
            r.set_yticks([])
        else:
            r.plot(rc["coverage"], rc["risk"], color="#8fa6ff", lw=1.2)
            r.set_xlim(0, 1)
            r.set_ylim(0, max(0.05, float(np.max(rc["risk"])) * 1.1))
            r.set_xlabel("coverage", fontsize=7)
            r.set_ylabel("risk (error rate)", fontsize=7)
            if rc.get("point") is not None:
                (self._point,) = r.plot(*rc["point"], "o", color="#ff4d6d", ms=5)
        r.set_title("risk–coverage", fontsize=8)
        self.canvas.draw_idle()

    def _on_draw(self, _: Any = None) -> None:
        """After a full draw: keep the histogram without its line, then draw the line."""
        self._background = self.canvas.copy_from_bbox(self.hist_ax.bbox)
        if self._line is not None:
            self.hist_ax.draw_artist(self._line)

    def move_threshold(self, value: float) -> None:
        """Move the threshold line only, by blitting (a few ms; for slider drags)."""
        if self._line is None:
            return
        self._line.set_xdata([value, value])
        if self._background is None:
            self.canvas.draw_idle()
            return
        self.canvas.restore_region(self._background)
        self.hist_ax.draw_artist(self._line)
        self.canvas.blit(self.hist_ax.bbox)

    def image(self) -> np.ndarray:
        """Return the canvas as an RGBA array (for screenshots in tests)."""
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba()).copy()

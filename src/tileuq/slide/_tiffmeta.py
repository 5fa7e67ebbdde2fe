"""Physical pixel size, objective and channel metadata from TIFF flavours (OME, QPTIFF, tags)."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from tileuq.slide._render import parse_color

# micrometres per unit (OME UnitsLength symbols and common spellings)
_UM_PER_UNIT = {
    "m": 1e6,
    "cm": 1e4,
    "mm": 1e3,
    "µm": 1.0,
    "μm": 1.0,
    "um": 1.0,
    "micron": 1.0,
    "nm": 1e-3,
    "pm": 1e-6,
    "Å": 1e-4,
    "A": 1e-4,
    "in": 25400.0,
    "inch": 25400.0,
}
# plausible range for a microscope pixel; TIFF resolution tags outside it (e.g. 72 dpi) are
# screen/print defaults, not a physical pixel size
MPP_RANGE = (0.01, 50.0)


def _plausible(v: float | None) -> float | None:
    if v is None or not (MPP_RANGE[0] <= v <= MPP_RANGE[1]):
        return None
    return v


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def ome_image(xml: str, index: int) -> ET.Element | None:
    """Return the ``index``-th OME ``Image`` element of ``xml`` (or ``None``)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    images = [e for e in root if _local(e.tag) == "Image"]
    if not images:
        return None
    return images[min(index, len(images) - 1)]


def ome_mpp(image: ET.Element) -> tuple[float, float] | None:
    """``(x, y)`` µm/px from ``Pixels/@PhysicalSizeX/Y`` and their units (default µm)."""
    pixels = next((e for e in image if _local(e.tag) == "Pixels"), None)
    if pixels is None:
        return None
    out = []
    for ax in ("X", "Y"):
        try:
            v = float(pixels.attrib[f"PhysicalSize{ax}"])
        except (KeyError, ValueError):
            return None
        unit = pixels.attrib.get(f"PhysicalSize{ax}Unit", "µm")
        factor = _UM_PER_UNIT.get(unit)
        if factor is None:
            return None
        out.append(_plausible(v * factor))
    return (out[0], out[1]) if out[0] and out[1] else None


def ome_channels(image: ET.Element) -> tuple[list[str], list[tuple[int, int, int] | None]]:
    """Channel names and colours (``Channel/@Name``, ``@Color``) of an OME image."""
    pixels = next((e for e in image if _local(e.tag) == "Pixels"), None)
    names: list[str] = []
    colors: list[tuple[int, int, int] | None] = []
    if pixels is None:
        return names, colors
    for i, ch in enumerate(e for e in pixels if _local(e.tag) == "Channel"):
        names.append(ch.attrib.get("Name", f"channel {i}"))
        colors.append(parse_color(ch.attrib["Color"]) if "Color" in ch.attrib else None)
    return names, colors


def ome_objective(xml: str) -> float | None:
    """Nominal magnification of the first OME ``Objective``."""
    m = re.search(r"NominalMagnification=\"([0-9.]+)\"", xml)
    return float(m.group(1)) if m else None


def qpi_channel(page: Any) -> tuple[str | None, tuple[int, int, int] | None]:
    """Name and colour of one QPTIFF (PerkinElmer/Akoya) channel page."""
    desc = page.description or ""
    name = re.search(r"<Name>(.*?)</Name>", desc)
    color = re.search(r"<Color>(.*?)</Color>", desc)
    return (name.group(1) if name else None, parse_color(color.group(1)) if color else None)


def qpi_image_type(page: Any) -> str | None:
    """``<ImageType>`` of a QPTIFF page (``FullResolution``, ``Thumbnail``, ``Label``, ...)."""
    m = re.search(r"<ImageType>(.*?)</ImageType>", page.description or "")
    return m.group(1) if m else None


def qpi_objective(page: Any) -> float | None:
    """Scan magnification from the QPTIFF ``<ScanResolution>`` block."""
    m = re.search(
        r"<ScanResolution.*?<Magnification>([0-9.]+)</Magnification>", page.description or "", re.S
    )
    return float(m.group(1)) if m else None


def qpi_mpp(page: Any) -> tuple[float, float] | None:
    """``<PixelSizeMicrons>`` of a QPTIFF page (nominal; used when the tags say nothing)."""
    m = re.search(r"<PixelSizeMicrons>([0-9.eE+-]+)</PixelSizeMicrons>", page.description or "")
    v = _plausible(float(m.group(1))) if m else None
    return (v, v) if v else None


def tag_mpp(page: Any) -> tuple[float, float] | None:
    """Return µm/px from ``XResolution``/``YResolution``, or ``None``.

    Only when the unit is inch or cm and the value is a plausible microscope pixel
    (:data:`MPP_RANGE`).
    """
    tags = page.tags
    unit = tags.get("ResolutionUnit")
    um = {2: 25400.0, 3: 1e4}.get(int(unit.value) if unit is not None else 2)
    xr, yr = tags.get("XResolution"), tags.get("YResolution")
    if um is None or xr is None or yr is None:
        return None
    try:
        px = xr.value[0] / xr.value[1] if isinstance(xr.value, tuple) else float(xr.value)
        py = yr.value[0] / yr.value[1] if isinstance(yr.value, tuple) else float(yr.value)
        mx, my = _plausible(um / px), _plausible(um / py)
    except (ZeroDivisionError, TypeError, ValueError):
        return None
    return (mx, my) if mx and my else None


def aperio_objective(description: str) -> float | None:
    """``AppMag = ...`` of an Aperio ImageDescription."""
    m = re.search(r"\|\s*AppMag\s*=\s*([0-9.]+)", description or "")
    return float(m.group(1)) if m else None


def aperio_mpp(description: str) -> tuple[float, float] | None:
    """``MPP = ...`` of an Aperio ImageDescription (when tifffile reads an SVS)."""
    m = re.search(r"\|\s*MPP\s*=\s*([0-9.]+)", description or "")
    v = _plausible(float(m.group(1))) if m else None
    return (v, v) if v else None

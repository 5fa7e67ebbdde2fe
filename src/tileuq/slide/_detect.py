"""Recognise a file's format from its content (magic bytes), not its extension."""

from __future__ import annotations

from pathlib import Path

from tileuq.errors import SlideError

TIFF_MAGICS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
IMAGE_MAGICS: tuple[tuple[bytes, str], ...] = (
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"\xff\xd8\xff", "jpeg"),
    (b"BM", "bmp"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "jp2"),
    (b"\xff\x4f\xff\x51", "j2k"),
)
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".gif", ".webp", ".jp2"}


def sniff(path: Path) -> str:
    """Return the content kind of ``path``.

    One of ``"tiff"``, ``"dicom"``, ``"png"``, ``"jpeg"``, ``"bmp"``, ``"gif"``, ``"webp"``,
    ``"jp2"``, ``"j2k"``, ``"text"`` or ``"unknown"``.  Raises :class:`SlideError` for an
    unreadable or empty file.
    """
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError as exc:
        raise SlideError(f"{path}: cannot read the file ({exc.strerror or exc})") from exc
    if not head:
        raise SlideError(f"{path}: the file is empty (0 bytes), not a slide or image")
    if head[:4] in TIFF_MAGICS:
        return "tiff"
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    for magic, kind in IMAGE_MAGICS:
        if head.startswith(magic):
            return kind
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if _looks_like_text(head):
        return "text"
    return "unknown"


def _looks_like_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        try:  # a multi-byte character cut at the end of the block
            text = head[:-4].decode("utf-8")
        except UnicodeDecodeError:
            return False
    printable = sum(ch.isprintable() or ch in "\r\n\t" for ch in text)
    return printable >= 0.95 * max(len(text), 1)


def describe_head(path: Path, n: int = 8) -> str:
    """Return the first ``n`` bytes of ``path`` as hex (for error messages)."""
    try:
        with open(path, "rb") as f:
            return f.read(n).hex(" ")
    except OSError:
        return "?"


def openslide_vendor(path: Path) -> str | None:
    """OpenSlide's format name for ``path`` (``"aperio"``, ``"mirax"``, ...) or ``None``."""
    try:
        import openslide

        return openslide.OpenSlide.detect_format(str(path))
    except Exception:  # missing library or unreadable file: not an OpenSlide format
        return None

"""Image attachments: check the first bytes, decode with Pillow under a pixel limit, re-encode.

Nothing the user sent is kept as it came: the pixels are decoded and written anew, so EXIF (GPS
positions, camera serials), XMP, ICC profiles and text chunks are gone, and a file that only
looks like an image (a polyglot, a truncated or hostile one) is refused rather than stored. The
picture is turned upright by its EXIF orientation first, and scaled to fit VISION_MAX_SIDE (what
OpenAI scales every image to anyway), so stored and sent images stay small.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, ImageOps, UnidentifiedImageError

VISION_MAX_SIDE = 2048
MAX_STORED_BYTES = 8 * 1024 * 1024  # a re-encoded PNG of noise can pass MongoDB's 16 MB document limit
# magic bytes -> (Pillow's format, the format it is stored as, its MIME type)
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG", "PNG", "image/png"),
    (b"\xff\xd8\xff", "JPEG", "JPEG", "image/jpeg"),
    (b"GIF87a", "GIF", "PNG", "image/png"),  # the first frame, as a still PNG
    (b"GIF89a", "GIF", "PNG", "image/png"),
)
EXTENSIONS = frozenset({"png", "jpg", "jpeg", "webp", "gif"})
_SAVE_OPTIONS = {"JPEG": {"quality": 88, "optimize": True}, "PNG": {"optimize": True},
                 "WEBP": {"quality": 88, "method": 4}}


class ImageRefused(ValueError):
    """The file is not an image we take; `status` is the HTTP status to answer (413 or 415)."""

    def __init__(self, message: str, status: int = 415) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class CleanImage:
    data: bytes
    mime: str
    width: int
    height: int


def sniff(raw: bytes) -> tuple[str, str, str] | None:
    """(Pillow format, stored format, MIME type) from the first bytes, or None for anything else."""
    if raw[:4] == b"RIFF" and raw[8:12] == b"WEBP":
        return "WEBP", "WEBP", "image/webp"
    for magic, pillow_format, stored, mime in _SIGNATURES:
        if raw.startswith(magic):
            return pillow_format, stored, mime
    return None


def clean(raw: bytes, max_pixels: int) -> CleanImage:
    """The image decoded and re-encoded without metadata; ImageRefused for anything else, for
    more than `max_pixels` pixels (checked from the header, before any pixel is decoded) and for
    a file whose content does not decode."""
    kind = sniff(raw)
    if kind is None:
        raise ImageRefused("This file is not a PNG, JPEG, WebP or GIF image (its first bytes say otherwise).")
    pillow_format, stored, mime = kind
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = _decode(raw, pillow_format, max_pixels)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageRefused(f"The image has more than {max_pixels:,} pixels.", 413) from None
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as error:
            raise ImageRefused(f"The image could not be read ({type(error).__name__}): it is damaged or not "
                               "really an image.") from None
    picture.thumbnail((VISION_MAX_SIDE, VISION_MAX_SIDE), Image.Resampling.LANCZOS)
    picture.info = {}  # nothing of the original's metadata is written back
    data = _encode(picture, stored)
    if len(data) > MAX_STORED_BYTES:  # lossless was too big: lossy WebP keeps any transparency
        data, mime = _encode(picture, "WEBP"), "image/webp"
    return CleanImage(data, mime, picture.width, picture.height)


def _encode(picture: Image.Image, kind: str) -> bytes:
    out = io.BytesIO()
    picture.save(out, format=kind, **_SAVE_OPTIONS[kind])
    return out.getvalue()


def _decode(raw: bytes, pillow_format: str, max_pixels: int) -> Image.Image:
    """Open (header only), check the size, then load the pixels of the first frame, upright."""
    Image.MAX_IMAGE_PIXELS = max_pixels  # Pillow's own bomb check in open(), at the same limit (idempotent)
    with Image.open(io.BytesIO(raw), formats=[pillow_format]) as opened:
        if opened.width * opened.height > max_pixels:
            raise Image.DecompressionBombError("over the pixel limit")
        opened.seek(0)
        if pillow_format == "JPEG":  # decode at the smallest DCT scale still at least VISION_MAX_SIDE: 4-16x less work
            opened.draft("RGB", (VISION_MAX_SIDE, VISION_MAX_SIDE))
        opened.load()
        upright = ImageOps.exif_transpose(opened)
        has_alpha = upright.mode in ("RGBA", "LA", "PA") or (upright.mode == "P" and "transparency" in upright.info)
        return upright.convert("RGBA" if has_alpha and pillow_format != "JPEG" else "RGB")

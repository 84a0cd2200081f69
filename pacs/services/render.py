"""Rendering pixels for people: one frame -> an 8-bit picture -> JPEG or PNG (PS3.18 8.3.5.1,
PS3.3 C.11 for the grayscale pipeline).

Room: services/. Imports pydicom, numpy and Pillow; no protocol. Every transfer syntax pydicom
can decode (native, RLE, deflate, JPEG, JPEG-LS, JPEG 2000 through pylibjpeg) renders; what it
cannot decode raises RenderError.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

FORMATS = {"image/jpeg": "JPEG", "image/png": "PNG"}


class RenderError(Exception):
    """The frame cannot be rendered (no pixel data, an encoding we cannot decode)."""


@dataclass(frozen=True)
class RenderOptions:
    """What the client asked for: format, size to fit, JPEG quality, an explicit window."""

    media_type: str = "image/jpeg"
    viewport: tuple[int, int] | None = None  # (width, height) to fit inside
    quality: int = 90
    window: tuple[float, float] | None = None  # (center, width)


def _first(value: object) -> float:
    if isinstance(value, MultiValue | list | tuple):
        value = value[0]
    return float(value)  # type: ignore[arg-type]


def window_linear(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1: the linear VOI function onto 0-255."""
    width = max(width, 1.0)
    low = center - 0.5 - (width - 1) / 2
    high = center - 0.5 + (width - 1) / 2
    scaled = ((values - (center - 0.5)) / (width - 1 if width > 1 else 1) + 0.5) * 255
    return np.where(values <= low, 0, np.where(values > high, 255, scaled))


def _stretch(values: np.ndarray) -> np.ndarray:
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros_like(values, dtype=np.float64)
    return (values - low) * (255.0 / (high - low))


def to_8bit(dataset: Dataset, pixels: np.ndarray, options: RenderOptions) -> np.ndarray:
    """Modality LUT, then the window (asked, else the data set's, else the full range)."""
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if pixels.ndim == 3 or int(dataset.get("SamplesPerPixel", 1)) > 1:
        bits = int(dataset.get("BitsStored", 8))
        return (pixels.astype(np.float64) * (255.0 / (2 ** bits - 1))) if bits > 8 \
            else pixels.astype(np.float64)
    if photometric == "PALETTE COLOR":
        rgb = apply_color_lut(pixels, dataset).astype(np.float64)
        return rgb / 257.0 if rgb.max() > 255 else rgb
    values = apply_modality_lut(pixels, dataset).astype(np.float64)
    if options.window is not None:
        shown = window_linear(values, *options.window)
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        shown = window_linear(values, _first(dataset.WindowCenter), _first(dataset.WindowWidth))
    elif "VOILUTSequence" in dataset:
        shown = _stretch(apply_voi_lut(values, dataset).astype(np.float64))
    else:
        shown = _stretch(values)
    return 255.0 - shown if photometric == "MONOCHROME1" else shown


def render_frame(dataset: Dataset, index: int, options: RenderOptions) -> bytes:
    """Frame `index` (0-based) of `dataset` as a JPEG or PNG file's bytes."""
    if "PixelData" not in dataset:
        raise RenderError("the instance has no pixel data")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pixels = pixel_array(dataset, index=index)
            shown = to_8bit(dataset, pixels, options)
    except Exception as exc:  # decoders raise many types for data they cannot read
        raise RenderError(f"cannot decode the pixel data: {exc}") from exc
    picture = Image.fromarray(np.clip(np.rint(shown), 0, 255).astype(np.uint8))
    if options.viewport is not None:
        width, height = options.viewport
        scale = min(width / picture.width, height / picture.height)
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.LANCZOS)
    output = io.BytesIO()
    image_format = FORMATS[options.media_type]
    if image_format == "JPEG":
        picture.save(output, "JPEG", quality=options.quality)
    else:
        picture.save(output, "PNG")
    return output.getvalue()

"""Annotation types a task can produce, in the ORIGINAL image's pixel coordinates."""

from __future__ import annotations

import math

import numpy as np
from pycocotools import mask as mask_utils
from pydantic import BaseModel, ConfigDict, Field, model_validator


class Box(BaseModel):
    """An axis-aligned box, `xyxy` in pixels of the original (EXIF-oriented) image."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(min_length=1, description="Class name, one of the requested classes.")
    x_min: float = Field(ge=0, description="Left edge, pixels from the image's left side.")
    y_min: float = Field(ge=0, description="Top edge, pixels from the image's top side.")
    x_max: float = Field(ge=0, description="Right edge, pixels.")
    y_max: float = Field(ge=0, description="Bottom edge, pixels.")
    score: float | None = Field(
        default=None, ge=0, le=1,
        description="Confidence in [0, 1]: geometric mean probability of the object's generated tokens (README).",
    )

    @model_validator(mode="after")
    def _has_area(self) -> Box:
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise ValueError(
                f"empty or inverted box x[{self.x_min}, {self.x_max}] y[{self.y_min}, {self.y_max}]"
            )
        return self


class Rle(BaseModel):
    """A binary mask over the whole image in COCO's compressed RLE, as pycocotools writes it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    size: list[int] = Field(min_length=2, max_length=2, description="[height, width] of the image, in pixels.")
    counts: str = Field(min_length=1, description="COCO compressed run lengths (pycocotools' string form).")

    @classmethod
    def from_binary(cls, mask: np.ndarray) -> Rle:
        """Encode a (height, width) boolean or 0/1 array (Fortran order avoids a copy)."""
        pixels = np.asfortranarray(mask)
        pixels = pixels.view(np.uint8) if pixels.dtype == bool else pixels.astype(np.uint8, order="F")
        encoded = mask_utils.encode(pixels)
        # pycocotools' own encoding of a real array needs none of the checks an RLE read from
        # elsewhere gets (they decode the whole image: 23 ms at 12 MP).
        return cls.model_construct(size=[int(v) for v in encoded["size"]], counts=encoded["counts"].decode("ascii"))

    def to_binary(self) -> np.ndarray:
        """Decode to a (height, width) boolean array."""
        return self._decoded().view(bool)

    def area(self) -> int:
        """Pixels in the mask, counted on the runs."""
        return int(mask_utils.area(self._as_coco()))

    def extent(self) -> tuple[int, int, int, int]:
        """The tightest [x0, x1) x [y0, y1) holding the mask's pixels, from the runs."""
        x, y, w, h = (int(v) for v in mask_utils.toBbox(self._as_coco()))
        return x, y, x + w, y + h

    def _as_coco(self) -> dict:
        return {"size": list(self.size), "counts": self.counts.encode("ascii")}

    def _decoded(self) -> np.ndarray:
        return mask_utils.decode(self._as_coco())

    @model_validator(mode="after")
    def _decodes(self) -> Rle:
        if min(self.size) < 1:
            raise ValueError(f"RLE size must be positive, got {self.size}")
        # pycocotools raises on runs longer than the image but not on shorter ones (the rest of
        # the decoded array is then undefined); its own encoding of the decoded mask gives the
        # same string exactly when the runs cover the image.
        try:
            round_trip = mask_utils.encode(self._decoded())["counts"]
        except ValueError as err:
            raise ValueError(f"RLE counts do not decode: {err}") from err
        if round_trip.decode("ascii") != self.counts:
            raise ValueError(f"RLE counts do not describe a {self.size[0]}x{self.size[1]} mask")
        return self


class Mask(Box):
    """A segmented object: its box, plus a mask over the whole image that lies inside that box."""

    rle: Rle = Field(description="The object's pixels over the whole image, COCO RLE.")

    def pixel_box(self) -> tuple[int, int, int, int]:
        """The pixel columns/rows the box covers: [x0, x1) x [y0, y1), whole pixels."""
        return (math.floor(self.x_min), math.floor(self.y_min), math.ceil(self.x_max), math.ceil(self.y_max))

    @model_validator(mode="after")
    def _inside_box(self) -> Mask:
        if self.rle.area() == 0:
            raise ValueError(f"mask {self.label!r} is empty")
        x0, y0, x1, y1 = self.pixel_box()
        mx0, my0, mx1, my1 = self.rle.extent()
        if mx0 < x0 or my0 < y0 or mx1 > x1 or my1 > y1:
            raise ValueError(f"mask {self.label!r} spans x[{mx0}, {mx1}) y[{my0}, {my1}), "
                             f"outside its box x[{x0}, {x1}) y[{y0}, {y1})")
        return self

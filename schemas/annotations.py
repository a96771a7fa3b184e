"""Annotation types a task can produce, in the ORIGINAL image's pixel coordinates."""

from __future__ import annotations

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
        default=None, ge=0, le=1, description="Confidence in [0, 1]; null until scores are computed."
    )

    @model_validator(mode="after")
    def _has_area(self) -> Box:
        if self.x_max <= self.x_min or self.y_max <= self.y_min:
            raise ValueError(
                f"empty or inverted box x[{self.x_min}, {self.x_max}] y[{self.y_min}, {self.y_max}]"
            )
        return self

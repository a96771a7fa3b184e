"""The output row: one per (image, task, prompt), whatever happened to it."""

from __future__ import annotations

import datetime
import enum

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, model_validator

from schemas.annotations import Box, Mask
from schemas.arrow import arrow_schema


class Status(str, enum.Enum):
    """What happened to a request. Every input image and task ends with exactly one of these."""

    OK = "ok"
    INVALID_OUTPUT = "invalid_output"  # the model answered, but (part of) the answer did not parse or validate
    IMAGE_ERROR = "image_error"  # the image could not be read or decoded
    MODEL_ERROR = "model_error"  # generation failed for this request


class FinishReason(str, enum.Enum):
    """Why generation ended, as vLLM and OpenAI name it."""

    STOP = "stop"  # the model ended its answer
    LENGTH = "length"  # the token budget ran out first: the answer is cut


class LabelRow(BaseModel):
    """One row of the annotation dataset. Column order here is the Parquet column order."""

    model_config = ConfigDict(extra="forbid", use_enum_values=True)

    image_id: str = Field(description="Stable id of the input image: a hash of its source URI.")
    source_uri: str = Field(description="Where the image came from (file, object, tar member or Parquet row).")
    width: int | None = Field(default=None, ge=1, description="Original width in pixels, after EXIF rotation.")
    height: int | None = Field(default=None, ge=1, description="Original height in pixels, after EXIF rotation.")
    task: str = Field(description="Task name from the registry, e.g. 'detect'.")
    prompt: str = Field(description="The exact prompt given to the model.")
    model: str = Field(description="Model id or directory, with '@revision' when one was pinned.")
    raw_output: str | None = Field(default=None, description="Generated text, special tokens removed.")
    finish_reason: FinishReason | None = Field(
        default=None, description="'stop' when the model ended its answer, 'length' when the token budget cut it; "
        "null when nothing was generated.")
    status: Status
    error: str | None = Field(default=None, description="Why the row is not 'ok'; null when it is.")
    boxes: list[Box] = Field(default_factory=list, description="Detected boxes, original pixel coordinates.")
    masks: list[Mask] = Field(
        default_factory=list, description="Segmented objects: box, label, score and a COCO RLE mask of the image."
    )
    text: str | None = Field(default=None, description="Caption, OCR text, answer or question.")
    text_score: float | None = Field(
        default=None, ge=0, le=1,
        description="Confidence of `text` in [0, 1]: geometric mean probability of the answer's tokens (README).",
    )
    run_id: str = Field(description="Id of the run that wrote this row.")
    created_at: datetime.datetime = Field(description="UTC time the row was validated.")

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> LabelRow:
        """Status and error agree; boxes and masks fit the image and, when the validation context
        gives `classes` (the requested ones), carry one of them."""
        if (self.status == Status.OK.value) != (self.error is None):
            raise ValueError(f"status {self.status!r} with error {self.error!r}: only 'ok' rows have no error")
        if (self.boxes or self.masks) and (self.width is None or self.height is None):
            raise ValueError("boxes and masks need the image size")
        classes = (info.context or {}).get("classes")
        for box in [*self.boxes, *self.masks]:
            if box.x_max > self.width or box.y_max > self.height:
                raise ValueError(f"box {box.label!r} extends past the {self.width}x{self.height} image")
            if classes is not None and box.label not in classes:
                raise ValueError(f"label {box.label!r} is not one of the requested classes {list(classes)}")
        for mask in self.masks:
            if mask.rle.size != [self.height, self.width]:
                raise ValueError(f"mask {mask.label!r} is {mask.rle.size} (h, w), the image {self.height}x{self.width}")
        return self


LABEL_ROW_SCHEMA = arrow_schema(LabelRow)

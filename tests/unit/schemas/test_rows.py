"""LabelRow rules and the Arrow schema derived from the pydantic models."""

import datetime
from typing import Optional

import numpy as np
import pyarrow as pa
import pytest
from pydantic import BaseModel, ValidationError

from schemas import LABEL_ROW_SCHEMA, Box, LabelRow, Mask, Rle, arrow_schema

NOW = datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc)


def make_row(**overrides) -> LabelRow:
    fields = dict(image_id="abc", source_uri="file:///a.jpg", width=100, height=50, task="detect",
                  prompt="detect car", model="m", raw_output="", status="ok", run_id="r", created_at=NOW)
    return LabelRow(**{**fields, **overrides})


def test_schema_has_the_output_contract_columns_in_order():
    assert LABEL_ROW_SCHEMA.names == [
        "image_id", "source_uri", "width", "height", "task", "prompt", "model", "raw_output", "finish_reason", "status",
        "error", "boxes", "masks", "text", "text_score", "run_id", "created_at",
    ]
    box = LABEL_ROW_SCHEMA.field("boxes").type.value_type
    assert [f.name for f in box] == ["label", "x_min", "y_min", "x_max", "y_max", "score"]
    assert box.field("score").nullable and not box.field("x_min").nullable
    assert LABEL_ROW_SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert LABEL_ROW_SCHEMA.field("error").nullable and not LABEL_ROW_SCHEMA.field("status").nullable
    finish_reason = LABEL_ROW_SCHEMA.field("finish_reason")
    assert finish_reason.type == pa.string() and finish_reason.nullable


def test_schema_follows_the_model():
    class Inner(BaseModel):
        a: int

    class Outer(BaseModel):
        name: str
        maybe: Optional[float] = None
        items: list[Inner]

    assert arrow_schema(Outer) == pa.schema([
        pa.field("name", pa.string(), nullable=False),
        pa.field("maybe", pa.float64()),
        pa.field("items", pa.list_(pa.struct([pa.field("a", pa.int64(), nullable=False)])), nullable=False),
    ])


def test_unsupported_types_are_refused():
    class Odd(BaseModel):
        value: int | str

    with pytest.raises(TypeError):
        arrow_schema(Odd)


def test_rows_round_trip_through_the_arrow_schema():
    row = make_row(boxes=[Box(label="car", x_min=1, y_min=2, x_max=3, y_max=4)])
    table = pa.Table.from_pylist([row.model_dump()], schema=LABEL_ROW_SCHEMA)
    assert LabelRow(**table.to_pylist()[0]) == row


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(status="ok", error="boom"), "only 'ok' rows have no error"),
        (dict(status="model_error"), "only 'ok' rows have no error"),
        (dict(status="done"), "status"),
        (dict(boxes=[Box(label="car", x_min=0, y_min=0, x_max=101, y_max=10)]), "extends past"),
        (dict(width=None, boxes=[Box(label="car", x_min=0, y_min=0, x_max=1, y_max=1)]), "need the image size"),
        (dict(width=0), "width"),
    ],
)
def test_inconsistent_rows_are_refused(overrides, message):
    with pytest.raises(ValidationError, match=message):
        make_row(**overrides)


@pytest.mark.parametrize(
    "coords", [dict(x_min=5, x_max=5, y_min=0, y_max=1), dict(x_min=0, x_max=1, y_min=3, y_max=2),
               dict(x_min=-1, x_max=1, y_min=0, y_max=1)]
)
def test_boxes_without_area_or_off_image_are_refused(coords):
    with pytest.raises(ValidationError):
        Box(label="car", **coords)


def test_box_score_must_be_a_probability():
    with pytest.raises(ValidationError):
        Box(label="car", x_min=0, y_min=0, x_max=1, y_max=1, score=1.5)


def square_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    pixels = np.zeros((height, width), bool)
    pixels[y0:y1, x0:x1] = True
    return pixels


def make_mask(label: str = "car", box=(10, 5, 30, 20), pixels_box=None, size=(50, 100)) -> Mask:
    x0, y0, x1, y1 = box
    rle = Rle.from_binary(square_mask(*size, pixels_box or box))
    return Mask(label=label, x_min=x0, y_min=y0, x_max=x1, y_max=y1, rle=rle)


def test_rle_round_trips_through_pycocotools():
    pixels = square_mask(50, 100, (10, 5, 30, 20))
    pixels[7, 12] = False  # a hole, so it is not just a rectangle
    rle = Rle.from_binary(pixels)
    assert rle.size == [50, 100] and isinstance(rle.counts, str)
    np.testing.assert_array_equal(rle.to_binary(), pixels)
    assert Rle.model_validate_json(rle.model_dump_json()) == rle


@pytest.mark.parametrize("counts", ["9", "0", "06", "zzzz"])
def test_rle_counts_that_do_not_cover_the_image_are_refused(counts):
    with pytest.raises(ValidationError, match="RLE counts"):
        Rle(size=[4, 5], counts=counts)


def test_a_mask_must_lie_inside_its_box_and_not_be_empty():
    assert make_mask().rle.to_binary().sum() == 20 * 15
    with pytest.raises(ValidationError, match=r"spans x\[40, 60\) y\[5, 20\), outside its box x\[10, 30\)"):
        make_mask(box=(10, 5, 30, 20), pixels_box=(40, 5, 60, 20))
    with pytest.raises(ValidationError, match="is empty"):
        make_mask(pixels_box=(0, 0, 0, 0))
    # a fractional box covers the pixels it touches
    fractional = Mask(label="car", x_min=9.6, y_min=4.5, x_max=29.2, y_max=19.01, rle=make_mask().rle)
    assert fractional.pixel_box() == (9, 4, 30, 20)


def test_a_mask_must_cover_the_rows_image():
    make_row(task="segment", masks=[make_mask()])
    with pytest.raises(ValidationError, match=r"mask 'car' is \[40, 100\] \(h, w\), the image 50x100"):
        make_row(task="segment", masks=[make_mask(size=(40, 100))])


def test_labels_must_be_requested_when_the_context_names_the_classes():
    row = make_row(task="segment", boxes=[make_mask()], masks=[make_mask()]).model_dump()
    LabelRow.model_validate(row, context={"classes": ("car",)})
    LabelRow.model_validate(row)  # no context, e.g. reading rows back: not checked
    with pytest.raises(ValidationError, match="label 'car' is not one of the requested classes"):
        LabelRow.model_validate(row, context={"classes": ("person",)})


def test_masks_are_a_list_of_structs_with_the_box_fields_and_rle():
    mask = LABEL_ROW_SCHEMA.field("masks").type.value_type
    assert [f.name for f in mask] == ["label", "x_min", "y_min", "x_max", "y_max", "score", "rle"]
    assert mask.field("rle").type == pa.struct([pa.field("size", pa.list_(pa.int64()), nullable=False),
                                                pa.field("counts", pa.string(), nullable=False)])
    row = make_row(task="segment", masks=[make_mask()])
    table = pa.Table.from_pylist([row.model_dump()], schema=LABEL_ROW_SCHEMA)
    assert LabelRow(**table.to_pylist()[0]) == row

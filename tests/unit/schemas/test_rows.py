"""LabelRow rules and the Arrow schema derived from the pydantic models."""

import datetime
from typing import Optional

import pyarrow as pa
import pytest
from pydantic import BaseModel, ValidationError

from schemas import LABEL_ROW_SCHEMA, Box, LabelRow, arrow_schema

NOW = datetime.datetime(2026, 11, 22, tzinfo=datetime.timezone.utc)


def make_row(**overrides) -> LabelRow:
    fields = dict(image_id="abc", source_uri="file:///a.jpg", width=100, height=50, task="detect",
                  prompt="detect car", model="m", raw_output="", status="ok", run_id="r", created_at=NOW)
    return LabelRow(**{**fields, **overrides})


def test_schema_has_the_output_contract_columns_in_order():
    assert LABEL_ROW_SCHEMA.names == [
        "image_id", "source_uri", "width", "height", "task", "prompt", "model", "raw_output", "status",
        "error", "boxes", "text", "run_id", "created_at",
    ]
    box = LABEL_ROW_SCHEMA.field("boxes").type.value_type
    assert [f.name for f in box] == ["label", "x_min", "y_min", "x_max", "y_max", "score"]
    assert box.field("score").nullable and not box.field("x_min").nullable
    assert LABEL_ROW_SCHEMA.field("created_at").type == pa.timestamp("us", tz="UTC")
    assert LABEL_ROW_SCHEMA.field("error").nullable and not LABEL_ROW_SCHEMA.field("status").nullable


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

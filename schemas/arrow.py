"""Derive Arrow schemas from pydantic models, so the Parquet schema cannot drift from them."""

from __future__ import annotations

import datetime
import enum
import types
import typing

import pyarrow as pa
from pydantic import BaseModel

_SCALARS: dict[type, pa.DataType] = {
    str: pa.string(),
    int: pa.int64(),
    float: pa.float64(),
    bool: pa.bool_(),
    datetime.datetime: pa.timestamp("us", tz="UTC"),
}


def _arrow_type(annotation: object) -> tuple[pa.DataType, bool]:
    """Return (Arrow type, nullable) for one field annotation."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"only Optional[X] unions map to Arrow, got {annotation!r}")
        return _arrow_type(args[0])[0], True
    if origin is list:
        (item,) = typing.get_args(annotation)
        return pa.list_(_arrow_type(item)[0]), False
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return pa.struct(_fields(annotation)), False
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return pa.string(), False
    if annotation in _SCALARS:
        return _SCALARS[annotation], False
    raise TypeError(f"no Arrow type for {annotation!r}")


def _fields(model: type[BaseModel]) -> list[pa.Field]:
    fields = []
    for name, info in model.model_fields.items():
        arrow_type, nullable = _arrow_type(info.annotation)
        fields.append(pa.field(name, arrow_type, nullable=nullable))
    return fields


def arrow_schema(model: type[BaseModel]) -> pa.Schema:
    """The Arrow schema of `model`'s fields, in declaration order."""
    return pa.schema(_fields(model))

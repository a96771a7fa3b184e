"""Typed records at the pipeline's boundaries; the Arrow output schema is derived from them."""

from schemas.annotations import Box, Mask, Rle
from schemas.arrow import arrow_schema
from schemas.rows import LABEL_ROW_SCHEMA, LabelRow, Status

__all__ = ["Box", "LABEL_ROW_SCHEMA", "LabelRow", "Mask", "Rle", "Status", "arrow_schema"]

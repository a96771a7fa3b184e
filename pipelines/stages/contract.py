"""What each Ray stage reads and writes, checked twice: once over the whole chain when the dataset is
composed (a missing column fails before any data moves), and on every batch while it runs.

The anchor is Ray's `ray.data.llm` stages (`get_required_input_keys`, one output row per input row
enforced). Pure Python: no Ray, no torch.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

MAX_ERROR_CHARS = 500


class Rows(enum.Enum):
    """How many rows a stage gives for each row it is given."""

    ONE_TO_ONE = "one row out per row in"
    FILTER = "at most one row out per row in"
    EXPAND = "any number of rows out per row in"


class StageContractError(ValueError):
    """A stage was given, or gave, what its contract does not allow."""


@dataclass(frozen=True)
class StageContract:
    """The columns a stage needs, the columns it adds (or replaces), and its row cardinality.

    `keeps_columns`: the stage passes every other column of its input through (less `drops`); when
    False its output holds exactly `writes`.
    """

    name: str
    reads: tuple[str, ...]
    writes: tuple[str, ...] = ()
    rows: Rows = Rows.ONE_TO_ONE
    keeps_columns: bool = True
    drops: tuple[str, ...] = ()

    def columns_after(self, available: Iterable[str]) -> tuple[str, ...]:
        """The columns that follow this stage, given those that reach it; raises StageContractError
        naming the stage and the first column it reads that is not there."""
        available = tuple(available)
        for column in self.reads:
            if column not in available:
                raise StageContractError(
                    f"stage {self.name!r} reads column {column!r}, which no earlier stage writes "
                    f"(available: {', '.join(available) or 'none'})")
        kept = [c for c in available if c not in self.drops and c not in self.writes] if self.keeps_columns else []
        return (*kept, *self.writes)

    def run(self, step: Callable[[Any], Any], batch: Any) -> Any:
        """`step(batch)`, with the batch checked against the contract on the way in and out.

        A batch is a dict of columns (NumPy) or a pyarrow Table."""
        missing = [c for c in self.reads if c not in _column_names(batch)]
        if missing:
            raise StageContractError(f"stage {self.name!r} got a batch without column(s) {', '.join(missing)}")
        out = step(batch)
        absent = [c for c in self.writes if c not in _column_names(out)]
        if absent:
            raise StageContractError(f"stage {self.name!r} did not write column(s) {', '.join(absent)}")
        rows_in, rows_out = _num_rows(batch), _num_rows(out)
        if (self.rows is Rows.ONE_TO_ONE and rows_out != rows_in) or (self.rows is Rows.FILTER and rows_out > rows_in):
            raise StageContractError(f"stage {self.name!r} gives {self.rows.value}, but gave {rows_out} rows "
                                     f"for {rows_in}")
        return out


def check_chain(source: Iterable[str], stages: Iterable[StageContract]) -> tuple[str, ...]:
    """The columns at the end of `stages` applied in order to a source of `source` columns; raises
    StageContractError at the first stage that reads a column nothing before it gives."""
    columns = tuple(source)
    for stage in stages:
        columns = stage.columns_after(columns)
    return columns


def describe_error(err: BaseException) -> str:
    """`Type: message`, truncated: how every stage writes an exception into the `error` column."""
    return f"{type(err).__name__}: {err}"[:MAX_ERROR_CHARS]


def _column_names(batch: Any) -> Iterable[str]:
    return batch.keys() if isinstance(batch, Mapping) else batch.column_names


def _num_rows(batch: Any) -> int:
    if isinstance(batch, Mapping):
        return len(next(iter(batch.values()))) if batch else 0
    return batch.num_rows

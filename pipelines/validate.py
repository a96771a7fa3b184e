"""Parse each generated answer with its task, validate it as a LabelRow, and emit Arrow rows."""

from __future__ import annotations

import datetime

import pyarrow as pa
from pydantic import ValidationError

from pipelines.tasks.registry import get_task
from schemas import columns as C
from schemas.job import PromptOptions
from schemas.rows import LABEL_ROW_SCHEMA, LabelRow, Status

MAX_PROBLEMS_CHARS = 2000


def join_problems(problems: list[str], limit: int = MAX_PROBLEMS_CHARS) -> str:
    """All problems in one `error` string, cut at `limit` characters with a count of what was cut."""
    text = "; ".join(problems)
    if len(text) <= limit:
        return text
    kept, size = [], 0
    for problem in problems:
        if size + len(problem) + 2 > limit - 40:
            break
        kept.append(problem)
        size += len(problem) + 2
    return "; ".join(kept) + f"; ... and {len(problems) - len(kept)} more"


def label_row(generated: dict, options: PromptOptions, model_name: str, run_id: str) -> LabelRow:
    """One generated row -> a validated LabelRow; an answer that fails parsing or validation
    still becomes a row, `invalid_output`, with its raw text and the reason."""
    ok = generated[C.STATUS] == Status.OK.value
    base = {name: generated[name] for name in (C.IMAGE_ID, C.SOURCE_URI, C.TASK, C.PROMPT, C.STATUS)}
    base.update(
        # Between stages "" and 0 mean absent (see schemas.columns); the output uses nulls.
        width=generated[C.WIDTH] or None,
        height=generated[C.HEIGHT] or None,
        raw_output=generated[C.RAW_OUTPUT] if ok else None,
        error=generated[C.ERROR] or None,
        model=model_name,
        run_id=run_id,
        created_at=datetime.datetime.now(datetime.timezone.utc),
    )
    if not ok:
        return LabelRow(**base)
    task = get_task(base[C.TASK])
    result = task.parse(base[C.RAW_OUTPUT], base[C.PROMPT], (base[C.WIDTH], base[C.HEIGHT]), options)
    fields = {"boxes": result.boxes} if task.output_field == "boxes" else {"text": result.text}
    if result.problems:
        fields.update(status=Status.INVALID_OUTPUT, error=join_problems(result.problems))
    try:
        return LabelRow(**{**base, **fields})
    except ValidationError as err:
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        return LabelRow(**{**base, C.STATUS: Status.INVALID_OUTPUT, C.ERROR: f"validation failed: {reason}"[:MAX_PROBLEMS_CHARS]})


def to_label_table(batch: pa.Table, options: PromptOptions, model_name: str, run_id: str) -> pa.Table:
    """The Ray step after generation: rows in, the same number of LabelRows out, as Arrow."""
    rows = [label_row(generated, options, model_name, run_id) for generated in batch.to_pylist()]
    return pa.Table.from_pylist([row.model_dump() for row in rows], schema=LABEL_ROW_SCHEMA)

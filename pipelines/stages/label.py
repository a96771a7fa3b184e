"""Parse each generated answer with its task, validate it as a LabelRow, and emit Arrow rows."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
from pydantic import ValidationError

from pipelines.parse.scores import TokenLogprobs
from pipelines.stages.contract import Rows, StageContract, describe_error
from pipelines.tasks.base import ModelAnswer
from pipelines.tasks.registry import get_task
from schemas import columns as C
from schemas.columns import unpack_mask_logits, unpack_token_ends, unpack_token_logprobs, unpack_token_top
from schemas.job import PromptOptions
from schemas.rows import LABEL_ROW_SCHEMA, FinishReason, LabelRow, Status

MAX_PROBLEMS_CHARS = 2000
# Mask logits are read for mask tasks only, token log-probabilities when present (else unscored).
CONTRACT = StageContract(
    "label", reads=(C.IMAGE_ID, C.SOURCE_URI, C.WIDTH, C.HEIGHT, C.TASK, C.PROMPT, C.RAW_OUTPUT, C.STATUS, C.ERROR),
    writes=tuple(LABEL_ROW_SCHEMA.names), rows=Rows.ONE_TO_ONE, keeps_columns=False)


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
        # An empty answer is an answer; a failed row keeps text only when some was generated.
        raw_output=generated[C.RAW_OUTPUT] if ok else (generated[C.RAW_OUTPUT] or None),
        finish_reason=generated.get(C.FINISH_REASON) or None,
        error=generated[C.ERROR] or None,
        model=model_name,
        run_id=run_id,
        created_at=datetime.datetime.now(datetime.timezone.utc),
    )
    if not ok:
        return LabelRow(**base)
    task = get_task(base[C.TASK])
    context = {"classes": options.classes}
    try:
        answer = ModelAnswer(
            raw_output=generated[C.RAW_OUTPUT],
            prompt=base[C.PROMPT],
            image_wh=(base[C.WIDTH], base[C.HEIGHT]),
            mask_logits=unpack_mask_logits(generated[C.MASK_LOGITS]) if task.decodes_masks else None,
            tokens=_token_logprobs(generated),
        )
        result = task.parse(answer, options)
    except Exception as err:  # a parser bug must cost one row its annotations, not the job its rows
        failed = {C.STATUS: Status.INVALID_OUTPUT, C.ERROR: f"could not parse: {describe_error(err)}"}
        return LabelRow.model_validate({**base, **failed}, context=context)
    fields = {name: getattr(result, name) for name in task.output_fields}
    problems = result.problems
    if base["finish_reason"] == FinishReason.LENGTH.value:
        # What was parsed is kept (whole entries, the text so far); the row says it is incomplete.
        problems = [f"answer cut by the token budget of {task.budget(options)} new tokens (complete entries "
                    f"kept; raise it with --max-new-tokens {task.name}=N)", *problems]
    if problems:
        fields.update(status=Status.INVALID_OUTPUT, error=join_problems(problems))
    try:
        return LabelRow.model_validate({**base, **fields}, context=context)
    except ValidationError as err:
        reason = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors())
        failed = {C.STATUS: Status.INVALID_OUTPUT, C.ERROR: f"validation failed: {reason}"[:MAX_PROBLEMS_CHARS]}
        return LabelRow.model_validate({**base, **failed}, context=context)


def _token_logprobs(generated: dict) -> TokenLogprobs | None:
    """The answer's token log-probabilities; None (unscored) for rows from a stage that sent none."""
    if C.TOKEN_LOGPROBS not in generated:
        return None
    logprobs = unpack_token_logprobs(generated[C.TOKEN_LOGPROBS]).astype(np.float64)
    top = unpack_token_top(generated.get(C.TOKEN_TOP_BINS, b""), generated.get(C.TOKEN_TOP_LOGPROBS, b""),
                           len(logprobs))
    return TokenLogprobs(ends=unpack_token_ends(generated[C.TOKEN_ENDS]).astype(np.int64), logprobs=logprobs,
                         top_bins=None if top is None else top[0].astype(np.int64),
                         top_logprobs=None if top is None else top[1].astype(np.float64))


def to_label_table(batch: pa.Table, options: PromptOptions, model_name: str, run_id: str) -> pa.Table:
    """The Ray step after generation: rows in, the same number of LabelRows out, as Arrow."""
    def label(generated: pa.Table) -> pa.Table:
        rows = [label_row(row, options, model_name, run_id) for row in generated.to_pylist()]
        return pa.Table.from_pylist([row.model_dump() for row in rows], schema=LABEL_ROW_SCHEMA)

    return CONTRACT.run(label, batch)

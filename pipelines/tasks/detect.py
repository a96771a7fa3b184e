"""`detect a ; b`: boxes for the requested classes."""

from pipelines.parse.detection import parse_detections
from pipelines.tasks.base import ModelAnswer, ParseResult, TaskSpec
from schemas.job import PromptOptions

# An object costs 4 loc tokens, 1-3 label tokens and a separator, about 7: budget 50 objects per class,
# for crowded scenes. A budget costs nothing while answers end by themselves (generate stops a batch when
# its longest answer ends; docs/performance.md, "Token budgets"); only an answer that never ends runs to
# it, so the cap bounds that, and --max-new-tokens overrides both.
_TOKENS_PER_CLASS = 360
_MIN_TOKENS = 16
_MAX_TOKENS = 2048


def _parse(answer: ModelAnswer, options: PromptOptions) -> ParseResult:
    boxes, problems = parse_detections(answer.raw_output, options.classes, answer.image_wh, answer.tokens)
    return ParseResult(boxes=boxes, problems=problems)


DETECT = TaskSpec(
    name="detect",
    build_prompts=lambda options, question: ["detect " + " ; ".join(options.classes)],
    max_new_tokens=lambda options: min(_MAX_TOKENS, _MIN_TOKENS + _TOKENS_PER_CLASS * len(options.classes)),
    parse=_parse,
    output_fields=("boxes",),
    check_options=lambda options: None if options.classes else "detect needs --classes",
)

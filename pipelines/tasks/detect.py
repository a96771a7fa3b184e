"""`detect a ; b`: boxes for the requested classes."""

from pipelines.parse.detection import parse_detections
from pipelines.tasks.base import ModelAnswer, ParseResult, TaskSpec
from schemas.job import PromptOptions

# An object costs 4 loc tokens, 1-3 label tokens and a separator: budget about three objects per
# class, and cap it so a prompt with many classes cannot make one batch decode for ever.
_TOKENS_PER_CLASS = 24
_MIN_TOKENS = 16
_MAX_TOKENS = 512


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

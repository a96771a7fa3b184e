"""`segment a ; b`: a box and a full-image mask per object of the requested classes."""

from pipelines.parse.segmentation import parse_segments
from pipelines.tasks.base import ModelAnswer, ParseResult, TaskSpec
from schemas.job import PromptOptions

# An object costs 4 loc + 16 seg tokens, 1-3 label tokens and a separator, about 23: budget 25 objects
# per class, capped like detect (see there) so one prompt cannot decode for ever.
_TOKENS_PER_CLASS = 600
_MIN_TOKENS = 32
_MAX_TOKENS = 4096


def _parse(answer: ModelAnswer, options: PromptOptions) -> ParseResult:
    boxes, masks, problems = parse_segments(
        answer.raw_output, options.classes, answer.image_wh, answer.mask_logits, answer.tokens
    )
    return ParseResult(boxes=boxes, masks=masks, problems=problems)


SEGMENT = TaskSpec(
    name="segment",
    build_prompts=lambda options, question: ["segment " + " ; ".join(options.classes)],
    max_new_tokens=lambda options: min(_MAX_TOKENS, _MIN_TOKENS + _TOKENS_PER_CLASS * len(options.classes)),
    parse=_parse,
    output_fields=("boxes", "masks"),
    check_options=lambda options: None if options.classes else "segment needs --classes",
    decodes_masks=True,
)

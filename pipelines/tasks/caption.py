"""`caption {lang}`, `cap {lang}`, `describe {lang}`: image captions of three lengths."""

from pipelines.tasks.base import TaskSpec, parse_text_answer

# big_vision decodes captions with 32 tokens; `describe` is the long form.
_BUDGET = {"caption": 32, "cap": 32, "describe": 128}

CAPTION = TaskSpec(
    name="caption",
    build_prompts=lambda options, question: [f"{options.caption_style} {options.lang}"],
    max_new_tokens=lambda options: _BUDGET[options.caption_style],
    parse=parse_text_answer,
    output_fields=("text", "text_score"),
)

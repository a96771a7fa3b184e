"""`ocr`: the text in the image."""

from pipelines.tasks.base import TaskSpec, parse_text_answer

OCR = TaskSpec(
    name="ocr",
    build_prompts=lambda options, question: ["ocr"],
    max_new_tokens=lambda options: 128,
    parse=parse_text_answer,
    output_fields=("text", "text_score"),
)

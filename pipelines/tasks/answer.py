"""`answer {lang} {question}`: visual question answering, one row per question."""

from pipelines.tasks.base import TaskSpec, parse_text_answer
from schemas.job import PromptOptions


def _prompts(options: PromptOptions, question: str | None) -> list[str]:
    # Questions given on the command line go to every image; a per-image question comes from the input.
    questions = list(options.questions) + ([question] if question else [])
    return [f"answer {options.lang} {q}" for q in questions]


ANSWER = TaskSpec(
    name="answer",
    build_prompts=_prompts,
    max_new_tokens=lambda options: 32,
    parse=parse_text_answer,
    output_fields=("text", "text_score"),
    check_options=lambda options: None
    if options.questions or options.per_image_questions
    else "answer needs --questions or --question-column",
)

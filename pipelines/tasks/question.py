"""`question {lang} {answer}`: generate a question whose answer is given, one row per answer."""

from pipelines.tasks.base import TaskSpec, parse_text_answer

QUESTION = TaskSpec(
    name="question",
    build_prompts=lambda options, question: [f"question {options.lang} {a}" for a in options.answers],
    max_new_tokens=lambda options: 32,
    parse=parse_text_answer,
    output_fields=("text", "text_score"),
    check_options=lambda options: None if options.answers else "question needs --answers",
)

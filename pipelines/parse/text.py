"""Free-text answers (captions, OCR, answers, questions)."""

from __future__ import annotations


def clean_text(raw_output: str, prompt: str) -> str:
    """Drop a prompt echo and surrounding whitespace from a generated answer.

    The pipeline decodes only the generated tokens, with special tokens removed, so an echo is
    rare; some checkpoints still repeat the prompt line, which is not part of the answer.
    """
    text = raw_output.strip()
    if prompt and text.startswith(prompt):
        text = text[len(prompt):].lstrip("\n").strip()
    return text

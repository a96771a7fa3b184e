"""Free-text answers: a repeated prompt line and surrounding whitespace are not part of the answer."""

from pipelines.parse.text import clean_text


def test_a_prompt_echo_and_whitespace_are_dropped():
    assert clean_text("caption en\na red car \n", "caption en") == "a red car"
    assert clean_text("  a red car", "caption en") == "a red car"


def test_an_answer_that_only_mentions_the_prompt_later_keeps_it():
    assert clean_text("it says caption en", "caption en") == "it says caption en"
    assert clean_text("", "ocr") == ""

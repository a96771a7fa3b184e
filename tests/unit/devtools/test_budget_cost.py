"""The budget-cost measurement: decoding steps follow the longest answer, not the budget, until an answer
never ends."""

from pipelines.devtools.budget_cost import shapes_pixels, time_budgets
from pipelines.devtools.tiny_model import save_scripted_paligemma


def test_answers_that_end_take_the_same_steps_whatever_the_budget(tmp_path):
    model = str(save_scripted_paligemma(tmp_path / "scripted", "<loc0001><loc0002><loc0003><loc0004> car",
                                        with_vae=False))
    pixels = shapes_pixels(3, 32)
    short, long = time_budgets(model, pixels, "detect car", [12, 200], batch_size=2, repeats=1)
    # 4 locations and " car" in characters (the tiny tokenizer has no words), then the end of sequence
    assert short["steps_per_batch"] == long["steps_per_batch"] == [9, 9]
    assert short["mean_answer_tokens"] == long["mean_answer_tokens"] == 8


def test_answers_that_never_end_run_to_the_budget(tiny_model_dir):
    pixels = shapes_pixels(2, 32)
    (row,) = time_budgets(tiny_model_dir, pixels, "caption en", [9], batch_size=2, repeats=1)
    assert row["steps_per_batch"] == [9] and row["mean_answer_tokens"] == 9 and row["seconds"] > 0

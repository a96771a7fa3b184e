"""The model stage on a real (tiny, random) PaliGemma, without Ray."""

import numpy as np
import pytest

from pipelines.infer import OUTPUT_COLUMNS, GenerateStage
from schemas import columns as C
from schemas.job import PromptOptions


def decoded_batch(errors: list[str], questions: list[str] | None = None) -> dict[str, np.ndarray]:
    n = len(errors)
    rng = np.random.default_rng(0)
    return {
        C.IMAGE_ID: np.array([f"img{i}" for i in range(n)], dtype=object),
        C.SOURCE_URI: np.array([f"file:///img{i}.png" for i in range(n)], dtype=object),
        C.QUESTION: np.array(questions or [""] * n, dtype=object),
        C.PIXELS: rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8),
        C.WIDTH: np.array([0 if e else 640 for e in errors]),
        C.HEIGHT: np.array([0 if e else 480 for e in errors]),
        C.ERROR: np.array(errors, dtype=object),
    }


@pytest.fixture(scope="module")
def stage(tiny_model_dir):
    options = PromptOptions(classes=("car", "person"), questions=("what is it?", "how many?"))
    return GenerateStage(tiny_model_dir, None, ["detect", "caption", "answer"], options, batch_size=2)


def test_every_image_and_prompt_gets_exactly_one_row(stage):
    out = stage(decoded_batch(["", "OSError: broken", ""]))
    assert set(out) == set(OUTPUT_COLUMNS)
    keys = list(zip(out[C.IMAGE_ID], out[C.TASK], out[C.PROMPT]))
    assert len(keys) == len(set(keys)) == 3 * (1 + 1 + 2)
    statuses = dict(zip(keys, out[C.STATUS]))
    assert all(s == "image_error" for (image, _, _), s in statuses.items() if image == "img1")
    assert all(s == "ok" for (image, _, _), s in statuses.items() if image != "img1")
    broken = [e for image, e in zip(out[C.IMAGE_ID], out[C.ERROR]) if image == "img1"]
    assert broken == ["OSError: broken"] * 4


def test_a_failing_generate_marks_only_its_batch(stage, monkeypatch):
    calls = []
    real_generate = stage.model.generate

    def flaky_generate(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if len(calls) == 1:
            raise RuntimeError("CUDA out of memory (injected)")
        return real_generate(**kwargs)

    monkeypatch.setattr(stage.model, "generate", flaky_generate)
    out = stage(decoded_batch(["", "", ""]))
    detect = [(s, e) for t, s, e in zip(out[C.TASK], out[C.STATUS], out[C.ERROR]) if t == "detect"]
    # batch_size 2: the first detect call (2 images) failed, the second (1 image) went through
    assert [s for s, _ in detect] == ["model_error", "model_error", "ok"]
    assert detect[0][1] == "RuntimeError: CUDA out of memory (injected)"
    assert calls[:2] == [2, 1]


def test_an_image_without_a_question_still_gets_a_row(tiny_model_dir):
    stage = GenerateStage(tiny_model_dir, None, ["answer"], PromptOptions(per_image_questions=True), batch_size=4)
    out = stage(decoded_batch(["", ""], questions=["is it red?", ""]))
    rows = sorted(zip(out[C.IMAGE_ID], out[C.PROMPT], out[C.STATUS]))
    assert rows == [("img0", "answer en is it red?", "ok"), ("img1", "", "image_error")]


def test_prompts_of_different_lengths_batch_like_single_requests(tiny_model_dir):
    # Left padding must not change a request's answer: the batch equals one-by-one generation.
    options = PromptOptions(questions=("what?", "what colour is the large object on the left?"))
    batch = decoded_batch(["", ""])
    batched = GenerateStage(tiny_model_dir, None, ["answer"], options, batch_size=4)(batch)
    single = GenerateStage(tiny_model_dir, None, ["answer"], options, batch_size=1)(batch)
    assert list(batched[C.RAW_OUTPUT]) == list(single[C.RAW_OUTPUT])

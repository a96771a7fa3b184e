"""The model stage on a real (tiny, random) PaliGemma, without Ray."""

import numpy as np
import pyarrow as pa
import pytest
import torch

from pipelines.devtools.tiny_model import save_scripted_paligemma
from pipelines.model import hf_engine
from pipelines.model.checkpoint import find_vae
from pipelines.model.generation import Generation
from pipelines.model.hf_engine import takes_encoded_images
from pipelines.stages.generate import OUTPUT_COLUMNS, GenerateStage, StageOptions
from pipelines.stages.label import to_label_table
from pipelines.tasks.registry import get_task
from schemas import columns as C
from schemas.columns import unpack_mask_logits, unpack_token_logprobs
from schemas.job import PromptOptions
from tests.rows import assert_each_once


def decoded_batch(errors: list[str], questions: list[str] | None = None,
                  done: list[list[str]] | None = None) -> dict[str, np.ndarray]:
    n = len(errors)
    rng = np.random.default_rng(0)
    return {
        C.IMAGE_ID: np.array([f"img{i}" for i in range(n)], dtype=object),
        C.SOURCE_URI: np.array([f"file:///img{i}.png" for i in range(n)], dtype=object),
        C.QUESTION: np.array(questions or [""] * n, dtype=object),
        C.DONE_TASKS: C.list_column(done or [[]] * n),
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
    keys = assert_each_once([dict(zip((C.IMAGE_ID, C.TASK, C.PROMPT), k))
                             for k in zip(out[C.IMAGE_ID], out[C.TASK], out[C.PROMPT])], 3 * (1 + 1 + 2))
    statuses = dict(zip(keys, out[C.STATUS]))
    assert all(s == "image_error" for (image, _, _), s in statuses.items() if image == "img1")
    assert all(s == "ok" for (image, _, _), s in statuses.items() if image != "img1")
    broken = [e for image, e in zip(out[C.IMAGE_ID], out[C.ERROR]) if image == "img1"]
    assert broken == ["OSError: broken"] * 4


def test_tasks_an_earlier_attempt_wrote_are_not_generated_again(stage):
    out = stage(decoded_batch(["", "", "OSError: broken"], done=[["caption"], [], ["answer", "detect"]]))
    keys = list(zip(out[C.IMAGE_ID], out[C.TASK]))
    assert sorted(set(keys)) == [("img0", "answer"), ("img0", "detect"), ("img1", "answer"), ("img1", "caption"),
                                 ("img1", "detect"), ("img2", "caption")]
    assert len(keys) == 3 + 4 + 1  # img0: detect + 2 answers; img1: all 4 prompts; img2: caption (image_error)






def test_a_batch_that_runs_out_of_memory_is_retried_in_halves(stage, monkeypatch):
    calls = []
    real_generate = stage.engine.model.generate

    def generate_with_memory_for_one(**kwargs):
        calls.append(kwargs["input_ids"].shape[0])
        if kwargs["input_ids"].shape[0] > 1:
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_generate(**kwargs)

    monkeypatch.setattr(stage.engine.model, "generate", generate_with_memory_for_one)
    out = stage(decoded_batch(["", "", ""]))
    assert set(out[C.STATUS]) == {"ok"} and len(out[C.STATUS]) == 3 * (1 + 1 + 2)
    # batch_size 2, a failed pair retried as two singles: detect and caption have 3 requests
    # ([2 -> 1, 1], [1]), answer 6 (two questions per image: three pairs)
    assert calls == [2, 1, 1, 1] * 2 + [2, 1, 1] * 3


def test_a_request_that_fails_alone_is_the_only_model_error(stage, monkeypatch):
    real_generate = stage.engine.model.generate
    tokenizer = stage.engine.processor.tokenizer

    def generate_failing_on_a_question(**kwargs):
        if any("poison" in text for text in tokenizer.batch_decode(kwargs["input_ids"])):
            raise torch.OutOfMemoryError("CUDA out of memory (injected)")
        return real_generate(**kwargs)

    monkeypatch.setattr(stage.engine.model, "generate", generate_failing_on_a_question)
    out = stage(decoded_batch(["", "", ""], questions=["", "poison?", ""]))
    rows = list(zip(out[C.IMAGE_ID], out[C.TASK], out[C.PROMPT], out[C.STATUS], out[C.ERROR]))
    assert len(rows) == len({row[:3] for row in rows}) == 3 * (1 + 1 + 2) + 1  # + the answer to its own question
    failed = [row for row in rows if row[3] != "ok"]
    assert [(image, task, prompt) for image, task, prompt, _, _ in failed] == [("img1", "answer", "answer en poison?")]
    assert failed[0][4] == "OutOfMemoryError: CUDA out of memory (injected)"


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


def test_segment_masks_of_a_batch_are_decoded_in_one_call(tiny_model_dir, monkeypatch):
    stage = GenerateStage(tiny_model_dir, None, ["segment", "detect"], PromptOptions(classes=("car",)), batch_size=4,
                          vae=find_vae(None, tiny_model_dir))
    codes = "".join(f"<seg{c:03d}>" for c in range(16))
    answers = iter([
        # one generate call per task: segment (3 images), then detect
        ["<loc0000><loc0000><loc0512><loc0512>" + codes + " car ; <loc0000><loc0000><loc0100><loc0100>" + codes
         + " car", "<loc0000><loc0000><loc0512><loc0512><seg001> car", "<loc0000><loc0000><loc0512><loc0512>" + codes],
        ["<loc0000><loc0000><loc0512><loc0512> car"] * 3,
    ])
    monkeypatch.setattr(stage.engine, "_generate", lambda requests, features=None: [
        Generation.unscored(text) for text in next(answers)])
    decoder_batches = []
    real_forward = stage.mask_decoder.forward
    monkeypatch.setattr(stage.mask_decoder, "forward", lambda x: decoder_batches.append(len(x)) or real_forward(x))

    out = stage(decoded_batch(["", "", ""]))
    assert decoder_batches == [3]  # 2 + 0 + 1 codeword sets, one call
    masks = [unpack_mask_logits(m) for m in out[C.MASK_LOGITS]]
    assert [(t, len(m)) for t, m in zip(out[C.TASK], masks)] == [
        ("segment", 2), ("segment", 0), ("segment", 1), ("detect", 0), ("detect", 0), ("detect", 0)]
    np.testing.assert_allclose(masks[0][0], masks[2][0])  # the same codewords decode to the same mask


def test_segment_without_a_mask_decoder_is_refused(tmp_path):
    from pipelines.devtools.tiny_model import save_tiny_paligemma

    model_dir = save_tiny_paligemma(tmp_path / "no-vae", with_vae=False)
    with pytest.raises(ValueError, match=r"\['segment'\] need the mask decoder"):
        GenerateStage(str(model_dir), None, ["segment"], PromptOptions(classes=("car",)), batch_size=1)


def test_a_failing_mask_decoder_keeps_the_answers(tiny_model_dir, monkeypatch):
    stage = GenerateStage(tiny_model_dir, None, ["segment"], PromptOptions(classes=("car",)), batch_size=4,
                          vae=find_vae(None, tiny_model_dir))

    def out_of_memory(codes):
        raise RuntimeError("CUDA out of memory (injected)")

    monkeypatch.setattr(stage.mask_decoder, "forward", out_of_memory)
    answer = "<loc0000><loc0000><loc0512><loc0512>" + "".join(f"<seg{c:03d}>" for c in range(16)) + " car"
    generated = Generation.unscored(answer, "stop")
    monkeypatch.setattr(stage.engine, "_generate", lambda requests, features=None: [generated] * len(requests))
    out = stage(decoded_batch(["", ""]))
    assert list(out[C.STATUS]) == ["model_error"] * 2
    assert list(out[C.ERROR]) == ["mask decoder: RuntimeError: CUDA out of memory (injected)"] * 2
    assert list(out[C.RAW_OUTPUT]) == [answer] * 2
    assert list(out[C.FINISH_REASON]) == ["stop"] * 2  # the answers were generated; only their masks were lost


def test_shared_vision_features_encode_each_image_once_and_change_no_answer(tiny_model_dir, monkeypatch):
    options = PromptOptions(classes=("car",))
    batch = decoded_batch(["", "OSError: broken", "", ""])
    outputs, encoded = {}, {}
    for share in (True, False):
        stage = GenerateStage(tiny_model_dir, None, ["detect", "caption"], options, batch_size=2,
                              stage_options=StageOptions(share_vision=share))
        encoded[share] = []
        real = stage.engine.model.model.get_image_features
        monkeypatch.setattr(stage.engine.model.model, "get_image_features",
                            lambda pixel_values, **kw: encoded[share].append(len(pixel_values)) or real(pixel_values,
                                                                                                         **kw))
        outputs[share] = stage(batch)
    assert encoded[True] == [2, 1]  # the 3 decodable images, once, in batches of 2
    assert encoded[False] == [2, 1, 2, 1]  # once per task
    assert list(outputs[True][C.RAW_OUTPUT]) == list(outputs[False][C.RAW_OUTPUT])
    for shared, plain in zip(outputs[True][C.TOKEN_LOGPROBS], outputs[False][C.TOKEN_LOGPROBS]):
        np.testing.assert_allclose(unpack_token_logprobs(shared), unpack_token_logprobs(plain), rtol=1e-4, atol=1e-5)


def test_without_generate_taking_encoded_images_each_task_encodes_its_own(tiny_model_dir, monkeypatch):
    """A transformers whose generate refuses `mm_encoder_outputs` (5.17): sharing stays off instead of failing rows."""
    stage = GenerateStage(tiny_model_dir, None, ["caption"], PromptOptions(), batch_size=2)
    assert takes_encoded_images(stage.engine.model) and stage.engine.share_vision

    class OlderForward(torch.nn.Module):
        def forward(self, input_ids=None, pixel_values=None, attention_mask=None, **kwargs):
            return None

    assert not takes_encoded_images(OlderForward())
    monkeypatch.setattr(hf_engine, "takes_encoded_images", lambda model: False)
    stage = GenerateStage(tiny_model_dir, None, ["detect", "caption"], PromptOptions(classes=("car",)), batch_size=2)
    assert not stage.engine.share_vision
    assert set(stage(decoded_batch(["", ""]))[C.STATUS]) == {"ok"}


def test_fixed_length_generates_the_whole_budget(tiny_model_dir, monkeypatch):
    stage = GenerateStage(tiny_model_dir, None, ["caption"], PromptOptions(), batch_size=2,
                          stage_options=StageOptions(fixed_length=True))
    lengths = []
    real = stage.engine.model.generate
    monkeypatch.setattr(stage.engine.model, "generate", lambda **kw: lengths.append(
        (out := real(**kw)).shape[1] - kw["input_ids"].shape[1]) or out)
    out = stage(decoded_batch(["", ""]))
    assert lengths == [get_task("caption").max_new_tokens(PromptOptions())]
    assert list(out[C.FINISH_REASON]) == ["length", "length"]  # no end of sequence: the budget ended it


def test_a_budget_from_the_options_bounds_generation_and_marks_the_cut(tiny_model_dir):
    options = PromptOptions(max_new_tokens=(("caption", 3),))
    out = GenerateStage(tiny_model_dir, None, ["caption"], options, batch_size=2)(decoded_batch(["", "OSError: x"]))
    finish = dict(zip(out[C.IMAGE_ID], out[C.FINISH_REASON]))
    assert finish == {"img0": "length", "img1": ""}  # the random model never stops; a failed image generated nothing


def crowded_answer(objects: int) -> list[str]:
    """`objects` label-less boxes of one class (as PaliGemma 2 mix answers), as tokens: every token of a
    scripted answer must be distinct, so the locations differ and each separator carries its own run of
    spaces (Gemma has tokens for whitespace runs too)."""
    tokens = []
    for i in range(objects):
        tokens += [f"<loc{40 * i + offset:04d}>" for offset in (1, 2, 30, 31)]
        if i < objects - 1:
            tokens.append("\u2581;" + "\u2581" * i)
    return tokens


@pytest.fixture(scope="module")
def crowded_model(tmp_path_factory):
    return str(save_scripted_paligemma(tmp_path_factory.mktemp("crowded"), crowded_answer(25), with_vae=False,
                                       hidden_size=128, num_layers=1))


def label(out: dict, options: PromptOptions) -> list[dict]:
    return to_label_table(pa.table({name: list(values) for name, values in out.items()}), options, "m", "r").to_pylist()


def test_a_crowded_scene_keeps_all_25_objects_with_the_default_budget(crowded_model):
    options = PromptOptions(classes=("car",))
    (row,) = label(GenerateStage(crowded_model, None, ["detect"], options, batch_size=1)(decoded_batch([""])), options)
    assert row["status"] == "ok" and row["finish_reason"] == "stop" and len(row["boxes"]) == 25
    assert {box["label"] for box in row["boxes"]} == {"car"}


def test_an_answer_over_the_budget_keeps_its_whole_entries_and_says_it_was_cut(crowded_model):
    options = PromptOptions(classes=("car",), max_new_tokens=(("detect", 40),))  # the old default
    (row,) = label(GenerateStage(crowded_model, None, ["detect"], options, batch_size=1)(decoded_batch([""])), options)
    assert row["finish_reason"] == "length" and row["status"] == "invalid_output"
    assert len(row["boxes"]) == 8  # 40 tokens: 8 whole entries of 4 locations and a separator
    assert row["error"].startswith("answer cut by the token budget of 40 new tokens")


@pytest.mark.parametrize("dtype, expected", [("auto", torch.float32), ("bfloat16", torch.bfloat16),
                                             ("float32", torch.float32)])
def test_the_model_runs_in_the_dtype_asked_and_auto_is_float32_on_cpu(tiny_model_dir, dtype, expected):
    stage = GenerateStage(tiny_model_dir, None, ["caption"], PromptOptions(), batch_size=2, dtype=dtype)
    assert stage.engine.model.dtype == expected
    out = stage(decoded_batch(["", ""]))
    assert list(out[C.STATUS]) == ["ok", "ok"]  # vision features shared and generated in that dtype

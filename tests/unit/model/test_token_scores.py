"""Stored scores equal a recomputation by one teacher-forced forward pass over the same tokens.

The model stage records log-probabilities inside its `generate` call; here the pipeline's rows go
through validation and a Parquet file, and each score is recomputed from the model's logits over
prompt + generated tokens in a single forward pass, one request at a time (no padding).
"""

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.devtools.tiny_model import save_scripted_paligemma
from pipelines.model.token_scores import answer_tokens
from pipelines.stages.generate import GenerateStage
from pipelines.stages.label import to_label_table
from schemas import columns as C
from schemas.job import PromptOptions
from tests.unit.stages.test_generate import decoded_batch

LOGIT_SCALE = 0.1


def run_and_store(stage: GenerateStage, batch: dict, options: PromptOptions, tmp_path) -> tuple[list[dict], list]:
    """The stage's rows, validated and read back from Parquet, and the ids each `generate` call returned."""
    calls = []
    real_generate = stage.engine.model.generate

    def recording_generate(**kwargs):
        sequences = real_generate(**kwargs)
        calls.append((kwargs["input_ids"].shape[1], sequences))
        return sequences

    stage.engine.model.generate = recording_generate
    out = stage(batch)
    generated = [dict(zip(out, values)) for values in zip(*out.values())]
    pq.write_table(to_label_table(pa.Table.from_pylist(generated), options, "m", "run"), tmp_path / "rows.parquet")
    new_ids = [row for prompt_length, sequences in calls for row in sequences[:, prompt_length:].tolist()]
    return pq.read_table(tmp_path / "rows.parquet").to_pylist(), new_ids


def teacher_forced_logprobs(stage: GenerateStage, prompt: str, pixels: np.ndarray, new_ids: list[int]) -> np.ndarray:
    """log p(new_ids[j] | image, prompt, new_ids[:j]) for every j, from one forward pass."""
    inputs = stage.engine.processor(text=["<image>" + prompt], images=[pixels], do_resize=False, return_tensors="pt")
    prompt_length = inputs["input_ids"].shape[1]
    answer = torch.tensor([new_ids])
    with torch.no_grad():
        logits = stage.engine.model(
            input_ids=torch.cat([inputs["input_ids"], answer], dim=1),
            attention_mask=torch.ones(1, prompt_length + len(new_ids), dtype=torch.long),
            # 0: the bidirectional prefix (image and prompt), 1: the causal answer, as in training
            token_type_ids=torch.cat([inputs["token_type_ids"], torch.ones_like(answer)], dim=1),
            pixel_values=inputs["pixel_values"].to(stage.engine.model.dtype),
        ).logits[0, prompt_length - 1:-1]
    return torch.log_softmax(logits.float(), dim=-1).gather(1, answer.T).squeeze(1).numpy()


def recomputed_answer_score(stage: GenerateStage, prompt: str, pixels: np.ndarray, ids: list[int]) -> float:
    tokenizer = stage.engine.processor.tokenizer
    logprobs = teacher_forced_logprobs(stage, prompt, pixels, ids)
    eos = {stage.engine.model.generation_config.eos_token_id}
    _, _, kept = answer_tokens(tokenizer, ids, logprobs, eos, set(tokenizer.all_special_ids))
    return float(np.exp(np.mean(kept, dtype=np.float64)))


def recomputed_box_score(stage: GenerateStage, prompt: str, pixels: np.ndarray, ids: list[int]) -> float:
    """The box rule on teacher-forced log-probabilities of a one-box answer: its least sure token among
    those ending within the <loc> run, times every later token (the label)."""
    tokenizer = stage.engine.processor.tokenizer
    logprobs = teacher_forced_logprobs(stage, prompt, pixels, ids)
    eos = {stage.engine.model.generation_config.eos_token_id}
    text, ends, kept = answer_tokens(tokenizer, ids, logprobs, eos, set(tokenizer.all_special_ids))
    in_locs = ends <= text.rindex(">") + 1
    return float(np.exp(kept[in_locs].min() + np.sum(kept[~in_locs], dtype=np.float64)))


def test_text_scores_equal_a_teacher_forced_pass_also_under_left_padding(tiny_model_dir, tmp_path):
    # Two questions of different lengths in one generate call: the shorter prompts are left-padded.
    options = PromptOptions(questions=("what?", "what colour is the large object on the left?"))
    stage = GenerateStage(tiny_model_dir, None, ["answer"], options, batch_size=4)
    batch = decoded_batch(["", ""])
    rows, new_ids = run_and_store(stage, batch, options, tmp_path)
    assert len(rows) == len(new_ids) == 4
    for row, ids, image in zip(rows, new_ids, [0, 0, 1, 1]):
        # random weights rarely end an answer: a cut one is invalid_output, and scored all the same
        assert (row["status"] == "ok") == (row["finish_reason"] == "stop") and 0 < row["text_score"] < 1
        expected = recomputed_answer_score(stage, row["prompt"], batch[C.PIXELS][image], ids)
        assert row["text_score"] == pytest.approx(expected, rel=1e-4)


def test_a_stored_box_score_equals_a_teacher_forced_pass(tmp_path):
    # The random model's detections never parse; a scripted one answers a valid box, whose entry
    # is the whole answer: its score is its weakest <loc> token times the label's tokens.
    answer = "<loc0100><loc0200><loc0300><loc0400> car"
    model_dir = save_scripted_paligemma(tmp_path / "scripted", answer, with_vae=False)
    options = PromptOptions(classes=("car",))
    stage = GenerateStage(str(model_dir), None, ["detect"], options, batch_size=2)
    with torch.no_grad():  # flatter logits, same argmax: probabilities well inside (0, 1)
        stage.engine.model.lm_head.weight.mul_(LOGIT_SCALE)
    batch = decoded_batch(["", ""])
    rows, new_ids = run_and_store(stage, batch, options, tmp_path)
    for row, ids, image in zip(rows, new_ids, [0, 1]):
        assert row["status"] == "ok" and row["raw_output"] == answer
        (box,) = row["boxes"]
        expected = recomputed_box_score(stage, row["prompt"], batch[C.PIXELS][image], ids)
        assert 1e-8 < box["score"] < 0.99  # a product over the label's tokens: small under these flat logits
        assert box["score"] == pytest.approx(expected, rel=1e-4)

"""Stored scores equal a recomputation by one teacher-forced forward pass over the same tokens.

The model stage records log-probabilities inside its `generate` call; here the pipeline's rows go
through validation and a Parquet file, and each score is recomputed from the model's logits over
prompt + generated tokens in a single forward pass, one request at a time (no padding).
"""

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipelines.devtools.tiny_model import save_scripted_paligemma
from pipelines.model.generation import answer_tokens
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


def teacher_forced_log_softmax(stage: GenerateStage, prompt: str, pixels: np.ndarray, new_ids: list[int]):
    """log p(. | image, prompt, new_ids[:j]) over the vocabulary for every j, from one forward pass."""
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
    return torch.log_softmax(logits.float(), dim=-1)


def recomputed_answer_score(stage: GenerateStage, prompt: str, pixels: np.ndarray, ids: list[int]) -> float:
    tokenizer = stage.engine.processor.tokenizer
    logprobs = teacher_forced_log_softmax(stage, prompt, pixels, ids).gather(1, torch.tensor([ids]).T).squeeze(1)
    eos = {stage.engine.model.generation_config.eos_token_id}
    _, _, kept = answer_tokens(tokenizer, ids, eos, set(tokenizer.all_special_ids))
    return float(np.exp(np.mean(logprobs.numpy()[kept], dtype=np.float64)))


def recomputed_box_score(stage: GenerateStage, prompt: str, pixels: np.ndarray, ids: list[int]) -> float:
    """The box rule on a teacher-forced pass over a one-box answer: per <loc> token, the share of the
    probability of the <loc> tokens among the step's 20 most likely that lies within an eighth of the
    box's side (at least one bin) of the chosen one, times every later token's probability (the label)."""
    tokenizer = stage.engine.processor.tokenizer
    log_softmax = teacher_forced_log_softmax(stage, prompt, pixels, ids)
    tokens = tokenizer.convert_ids_to_tokens(ids)
    locs = [int(token[4:8]) for token in tokens if token.startswith("<loc")]
    y0, x0, y1, x1 = locs
    tolerance = [max(1, (y1 - y0) // 8), max(1, (x1 - x0) // 8)] * 2
    log_score = 0.0
    for step, token in enumerate(tokens):
        if token == tokenizer.eos_token:
            break
        if step < 4:
            top = log_softmax[step].topk(20)
            located = [(math.exp(value), int(other[4:8])) for value, other in zip(
                top.values.tolist(), tokenizer.convert_ids_to_tokens(top.indices.tolist())) if other.startswith("<loc")]
            near = sum(p for p, bin_ in located if abs(bin_ - locs[step]) <= tolerance[step])
            log_score += math.log(near / sum(p for p, _ in located))
        else:
            log_score += float(log_softmax[step, ids[step]])
    return math.exp(log_score)


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
    # The random model's detections never parse; a scripted one answers a valid box, whose entry is
    # the whole answer, and puts some of each coordinate's probability 3 bins away (inside the box's
    # tolerance of 25 bins) and some 60 bins away (outside it).
    answer = "<loc0100><loc0200><loc0300><loc0400> car"
    model_dir = save_scripted_paligemma(tmp_path / "scripted", answer, with_vae=False,
                                        location_alternatives={3: -1.0, -60: -0.5})
    options = PromptOptions(classes=("car",))
    stage = GenerateStage(str(model_dir), None, ["detect"], options, batch_size=2)
    batch = decoded_batch(["", ""])
    rows, new_ids = run_and_store(stage, batch, options, tmp_path)
    for row, ids, image in zip(rows, new_ids, [0, 1]):
        assert row["status"] == "ok" and row["raw_output"] == answer
        (box,) = row["boxes"]
        expected = recomputed_box_score(stage, row["prompt"], batch[C.PIXELS][image], ids)
        chosen_only = math.exp(sum(teacher_forced_log_softmax(stage, row["prompt"], batch[C.PIXELS][image], ids)
                                   .gather(1, torch.tensor([ids]).T).squeeze(1)[:5].tolist()))
        assert box["score"] > 1.01 * chosen_only  # the bins 3 away count, those 60 away do not
        assert box["score"] == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize(("alternatives", "low", "high"), [
    ({1: -0.5, -2: -0.5, 3: -1.0, -4: -1.0}, 0.99, 1.0),  # unsure which of five neighbouring bins: right all the same
    ({100: -0.5, -200: -0.5, 150: -1.0, -300: -1.0}, 0.0, 0.34 ** 4),  # unsure where the box is: 0.339 ** 4
])
def test_a_box_whose_coordinates_spread_over_neighbouring_bins_scores_high_and_far_apart_low(
        tmp_path, alternatives, low, high):
    # Under either script the chosen bins' own probabilities are the same (0.34 each), so the
    # earlier score (least sure coordinate times the label) could not tell the two apart.
    answer = "<loc0400><loc0410><loc0600><loc0610> car"
    model_dir = save_scripted_paligemma(tmp_path / "scripted", answer, with_vae=False,
                                        location_alternatives=alternatives)
    options = PromptOptions(classes=("car",))
    rows, _ = run_and_store(GenerateStage(str(model_dir), None, ["detect"], options, batch_size=1),
                            decoded_batch([""]), options, tmp_path)
    (box,) = rows[0]["boxes"]
    assert low <= box["score"] <= high, box["score"]

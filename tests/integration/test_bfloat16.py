"""The GPU's number format, on CPU: the whole pipeline with bfloat16 weights (every stage, masks and scores
included), so that a dtype mistake in the code that otherwise only runs on CUDA shows here."""

import numpy as np
import pytest

from pipelines.devtools.tiny_model import save_scripted_paligemma
from pipelines.run import annotate
from schemas import LabelRow
from schemas.job import JobConfig
from tests.integration.conftest import read_output
from tests.integration.test_segment import ANSWER  # a known segmentation, scripted into the checkpoint
from tests.jobs import SAMPLES
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration



def run(tmp_path, model_dir: str, dtype: str) -> dict:
    cfg = JobConfig(input=str(SAMPLES), output=str(tmp_path / dtype), model=model_dir, tasks="segment,detect,caption",
                    classes="car", batch_size=2, dtype=dtype)
    summary = annotate(cfg)
    assert summary["dtype"] == dtype
    rows = read_output(cfg.output).to_pylist()
    assert_each_once(rows, 5 * 3)
    return {(row["source_uri"], row["task"]): row for row in rows}


def test_bfloat16_weights_give_the_same_rows_as_float32_with_close_scores(tmp_path, ray_local):
    model_dir = str(save_scripted_paligemma(tmp_path / "scripted", ANSWER))
    half, full = run(tmp_path, model_dir, "bfloat16"), run(tmp_path, model_dir, "float32")
    for key, row in half.items():
        LabelRow.model_validate(row, context={"classes": ("car",)})
        assert row["status"] == "ok" and row["finish_reason"] == "stop", row["error"]
        assert row["raw_output"] == full[key]["raw_output"] == ANSWER
        assert row["boxes"] == [{**box, "score": row["boxes"][i]["score"]} for i, box in enumerate(full[key]["boxes"])]
        if key[1] == "segment":
            (mask,), (reference,) = row["masks"], full[key]["masks"]
            assert mask["rle"] == reference["rle"]  # the same codewords through the same decoder
        scores = [b["score"] for b in row["boxes"]] + [m["score"] for m in row["masks"]] + [row["text_score"]]
        references = ([b["score"] for b in full[key]["boxes"]] + [m["score"] for m in full[key]["masks"]]
                      + [full[key]["text_score"]])
        for score, reference in zip(scores, references):
            if reference is None:
                assert score is None
            else:  # bfloat16 keeps 8 bits of mantissa: scores agree to a few percent, not to the last digit
                assert 0 < score <= 1 and np.isclose(score, reference, rtol=0.05, atol=1e-3)

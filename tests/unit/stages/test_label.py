"""Generated rows -> validated LabelRows as Arrow: one row out per row in, whatever happened."""

import numpy as np
import pyarrow as pa

from pipelines.stages.label import join_problems, label_row, to_label_table
from schemas import LABEL_ROW_SCHEMA
from schemas import columns as C
from schemas.columns import pack_mask_logits
from schemas.job import PromptOptions

OPTIONS = PromptOptions(classes=("car",))


def generated(**overrides) -> dict:
    row = {C.IMAGE_ID: "id", C.SOURCE_URI: "file:///x.jpg", C.WIDTH: 200, C.HEIGHT: 100, C.TASK: "detect",
           C.PROMPT: "detect car", C.RAW_OUTPUT: "<loc0000><loc0512><loc0512><loc1000> car", C.STATUS: "ok",
           C.ERROR: ""}
    return {**row, **overrides}


def test_a_clean_detection_is_ok_with_boxes_in_pixels():
    row = label_row(generated(), OPTIONS, "m", "run")
    assert row.status == "ok" and row.error is None
    assert [(b.label, b.x_min, b.y_min, b.x_max, b.y_max) for b in row.boxes] == [("car", 100, 0, 195.3125, 50)]
    assert row.model == "m" and row.run_id == "run" and row.created_at.tzinfo is not None


def test_invalid_entries_keep_the_valid_boxes_and_the_raw_output():
    raw = "<loc0000><loc0512><loc0512><loc1000> car ; <loc0001> car ; <loc0000><loc0000><loc0010><loc0010> bus"
    row = label_row(generated(**{C.RAW_OUTPUT: raw}), OPTIONS, "m", "run")
    assert row.status == "invalid_output"
    assert len(row.boxes) == 1 and row.raw_output == raw
    assert "1 location tokens" in row.error and "unknown label 'bus'" in row.error


def test_text_tasks_fill_text():
    row = label_row(generated(**{C.TASK: "caption", C.PROMPT: "caption en", C.RAW_OUTPUT: " a car "}),
                    OPTIONS, "m", "run")
    assert row.status == "ok" and row.text == "a car" and row.boxes == []


def test_error_rows_pass_through_with_nulls_for_what_is_absent():
    row = label_row(generated(**{C.STATUS: "image_error", C.ERROR: "OSError: truncated", C.WIDTH: 0,
                                 C.HEIGHT: 0, C.RAW_OUTPUT: ""}), OPTIONS, "m", "run")
    assert row.status == "image_error" and row.error == "OSError: truncated"
    assert row.width is None and row.height is None and row.raw_output is None and row.boxes == []


def test_the_table_has_the_derived_schema_and_one_row_per_input():
    rows = [generated(), generated(**{C.STATUS: "model_error", C.ERROR: "RuntimeError: oom"}),
            generated(**{C.RAW_OUTPUT: "garbage"})]
    batch = pa.Table.from_pylist(rows)
    table = to_label_table(batch, OPTIONS, "m", "run")
    assert table.schema == LABEL_ROW_SCHEMA
    assert table.column("status").to_pylist() == ["ok", "model_error", "invalid_output"]


def test_long_problem_lists_are_cut_with_a_count():
    text = join_problems([f"problem number {i}" for i in range(1000)], limit=200)
    assert len(text) <= 200 and text.endswith("more")
    assert join_problems(["a", "b"]) == "a; b"


def test_a_segment_answer_becomes_boxes_and_masks():
    codes = "".join(f"<seg{c:03d}>" for c in range(16))
    raw = "<loc0000><loc0512><loc0512><loc1000>" + codes + " car ; <loc0000><loc0000><loc0100><loc0100><seg001> car"
    logits = -np.ones((1, 64, 64), np.float32)
    logits[0, :32] = 1  # top half of the box
    row = label_row(generated(**{C.TASK: "segment", C.PROMPT: "segment car", C.RAW_OUTPUT: raw,
                                 C.MASK_LOGITS: pack_mask_logits(logits)}), OPTIONS, "m", "run")
    assert row.status == "invalid_output" and "1 of 16 segmentation codewords" in row.error
    assert len(row.boxes) == 2 and [m.label for m in row.masks] == ["car"]
    pixels = row.masks[0].rle.to_binary()
    assert pixels.shape == (100, 200) and pixels.sum() == 25 * 95  # rows 0..24, columns 100..194
    table = to_label_table(pa.Table.from_pylist([generated(**{C.MASK_LOGITS: b""}), {
        **generated(**{C.TASK: "segment", C.PROMPT: "segment car", C.RAW_OUTPUT: raw,
                       C.MASK_LOGITS: pack_mask_logits(logits)})}]), OPTIONS, "m", "run")
    assert table.schema == LABEL_ROW_SCHEMA
    assert [len(m) for m in table.column("masks").to_pylist()] == [0, 1]


def test_broken_mask_transport_costs_one_row_its_annotations_not_the_job():
    raw = "<loc0000><loc0000><loc0512><loc0512>" + "".join(f"<seg{c:03d}>" for c in range(16)) + " car"
    for broken in (b"123", None):
        row = label_row(generated(**{C.TASK: "segment", C.PROMPT: "segment car", C.RAW_OUTPUT: raw,
                                     C.MASK_LOGITS: broken}), OPTIONS, "m", "run")
        assert row.status == "invalid_output" and row.error.startswith("could not parse: ")
        assert row.raw_output == raw and row.masks == []


def test_a_failed_row_keeps_the_text_that_was_generated():
    row = label_row(generated(**{C.STATUS: "model_error", C.ERROR: "mask decoder: RuntimeError: oom"}),
                    OPTIONS, "m", "run")
    assert row.status == "model_error" and row.raw_output.endswith(" car") and row.boxes == []


def test_an_answer_cut_by_the_budget_keeps_its_whole_entries_and_says_it_was_cut():
    raw = "<loc0000><loc0512><loc0512><loc1000> car ; <loc0100><loc0100><loc0200><loc0200> car ; <loc0001><loc00"
    row = label_row(generated(**{C.RAW_OUTPUT: raw, C.FINISH_REASON: "length"}), OPTIONS, "m", "run")
    assert row.status == "invalid_output" and row.finish_reason == "length" and len(row.boxes) == 2
    assert row.error.startswith("answer cut by the token budget of 376 new tokens")
    assert "--max-new-tokens detect=N" in row.error
    budget = PromptOptions(classes=("car",), max_new_tokens=(("detect", 50),))
    assert "token budget of 50 new tokens" in label_row(generated(**{C.FINISH_REASON: "length"}), budget, "m",
                                                        "run").error


def test_finish_reasons_pass_to_the_row_and_nothing_generated_has_none():
    assert label_row(generated(**{C.FINISH_REASON: "stop"}), OPTIONS, "m", "run").finish_reason == "stop"
    assert label_row(generated(), OPTIONS, "m", "run").finish_reason is None  # a stage that sent none
    failed = label_row(generated(**{C.STATUS: "image_error", C.ERROR: "OSError: x", C.RAW_OUTPUT: "",
                                    C.FINISH_REASON: ""}), OPTIONS, "m", "run")
    assert failed.finish_reason is None and failed.raw_output is None

"""Stage contracts: a chain is checked before data moves, and every batch on its way through a stage."""

import numpy as np
import pyarrow as pa
import pytest

from pipelines.stages.contract import Rows, StageContract, StageContractError, check_chain, describe_error

DECODE = StageContract("decode", reads=("bytes",), writes=("pixels", "error"), drops=("bytes",))
GENERATE = StageContract("generate", reads=("id", "pixels", "done"), writes=("id", "text"), rows=Rows.EXPAND,
                         keeps_columns=False)
RESUME = StageContract("resume", reads=("id",), writes=("done",), rows=Rows.FILTER)


def test_a_chain_gives_the_columns_each_stage_leaves():
    assert DECODE.columns_after(("id", "bytes")) == ("id", "pixels", "error")
    assert check_chain(("id", "bytes"), [RESUME, DECODE, GENERATE]) == ("id", "text")


def test_a_column_no_earlier_stage_writes_fails_naming_stage_and_column():
    with pytest.raises(StageContractError) as raised:
        check_chain(("id", "bytes"), [DECODE, GENERATE])
    assert str(raised.value) == ("stage 'generate' reads column 'done', which no earlier stage writes "
                                 "(available: id, pixels, error)")


def test_a_dropped_column_is_gone_for_later_stages():
    reads_bytes = StageContract("late", reads=("bytes",))
    with pytest.raises(StageContractError, match="'late' reads column 'bytes'"):
        check_chain(("id", "bytes"), [DECODE, reads_bytes])


def test_a_batch_missing_a_column_is_refused_before_the_step_runs():
    ran = []
    with pytest.raises(StageContractError, match="stage 'decode' got a batch without column"):
        DECODE.run(ran.append, {"id": np.array(["a"])})
    assert ran == []


def test_a_step_that_does_not_write_its_columns_is_caught():
    with pytest.raises(StageContractError, match="did not write column"):
        DECODE.run(lambda batch: {"pixels": batch["bytes"]}, {"bytes": np.array([b"x"])})


def test_one_to_one_stages_give_one_row_per_row_for_numpy_and_arrow_batches():
    batch = {"bytes": np.array([b"a", b"b"], dtype=object)}
    out = DECODE.run(lambda b: {"pixels": b["bytes"], "error": np.array(["", ""])}, batch)
    assert len(out["pixels"]) == 2
    with pytest.raises(StageContractError, match="one row out per row in, but gave 1 rows for 2"):
        DECODE.run(lambda b: {"pixels": b["bytes"][:1], "error": np.array([""])}, batch)
    label = StageContract("label", reads=("a",), writes=("b",), keeps_columns=False)
    table = pa.table({"a": [1, 2, 3]})
    assert label.run(lambda t: t.rename_columns(["b"]), table).num_rows == 3
    with pytest.raises(StageContractError, match="gave 2 rows for 3"):
        label.run(lambda t: t.rename_columns(["b"]).slice(0, 2), table)


def test_a_filter_may_drop_rows_but_not_add_them():
    batch = {"id": np.array(["a", "b"])}
    assert len(RESUME.run(lambda b: {"id": b["id"][:0], "done": np.array([])}, batch)["id"]) == 0
    with pytest.raises(StageContractError, match="at most one row out per row in"):
        RESUME.run(lambda b: {"id": np.repeat(b["id"], 2), "done": np.zeros(4)}, batch)


def test_an_expanding_stage_may_give_any_number_of_rows():
    batch = {"id": np.array(["a"]), "pixels": np.zeros((1, 2)), "done": np.array([None])}
    assert len(GENERATE.run(lambda b: {"id": np.array(["a"] * 5), "text": np.array([""] * 5)}, batch)["id"]) == 5


def test_errors_are_type_and_message_cut_to_a_bound():
    assert describe_error(ValueError("bad pixel")) == "ValueError: bad pixel"
    assert len(describe_error(ValueError("x" * 10_000))) == 500

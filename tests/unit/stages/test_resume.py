"""The resume step: finished images are dropped, the others carry the tasks already written."""

import numpy as np

from pipelines.stages.resume import drop_finished
from schemas import columns as C


def test_finished_images_are_dropped_and_partly_finished_ones_carry_their_done_tasks():
    batch = {C.IMAGE_ID: np.array(["a", "b", "c", "d"], dtype=object),
             C.IMAGE_BYTES: np.array([b"1", b"2", b"3", b"4"], dtype=object)}
    finished = {"a": frozenset({"detect", "caption"}), "b": frozenset({"caption"}), "x": frozenset({"detect"}),
                "d": frozenset({"detect", "caption", "ocr"})}
    out = drop_finished(batch, finished, ["detect", "caption"])
    assert list(out[C.IMAGE_ID]) == ["b", "c"]
    assert list(out[C.IMAGE_BYTES]) == [b"2", b"3"]
    assert [list(done) for done in out[C.DONE_TASKS]] == [["caption"], []]


def test_nothing_finished_keeps_every_row():
    batch = {C.IMAGE_ID: np.array(["a", "b"], dtype=object)}
    out = drop_finished(batch, {}, ["detect"])
    assert list(out[C.IMAGE_ID]) == ["a", "b"] and [list(done) for done in out[C.DONE_TASKS]] == [[], []]

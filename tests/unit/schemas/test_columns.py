"""Columns between stages: packed arrays round-trip, and list columns stay lists of Python values."""

import numpy as np

from schemas import columns as C


def test_packed_arrays_round_trip():
    masks = np.random.default_rng(0).random((2, C.MASK_SIZE, C.MASK_SIZE)).astype(np.float32)
    np.testing.assert_array_equal(C.unpack_mask_logits(C.pack_mask_logits(masks)), masks)
    assert C.unpack_mask_logits(b"").shape == (0, C.MASK_SIZE, C.MASK_SIZE)
    logprobs, ends = np.array([-0.5, -1.25], np.float32), np.array([3, 9], np.int32)
    np.testing.assert_array_equal(C.unpack_token_logprobs(C.pack_token_logprobs(logprobs)), logprobs)
    np.testing.assert_array_equal(C.unpack_token_ends(C.pack_token_ends(ends)), ends)


def test_list_columns_hold_python_lists_even_when_given_arrays():
    column = C.list_column([np.array(["caption", "detect"], dtype=object), []])
    assert column.dtype == object and [type(value) for value in column] == [list, list]
    assert column.tolist() == [["caption", "detect"], []]


def test_carry_drops_what_a_step_consumes_and_repacks_list_columns():
    batch = {C.IMAGE_ID: np.array(["a"], dtype=object), C.IMAGE_BYTES: np.array([b"x"], dtype=object),
             C.DONE_TASKS: np.array([np.array(["ocr"], dtype=object)], dtype=object)}
    carried = C.carry(batch, drop=(C.IMAGE_BYTES,))
    assert list(carried) == [C.IMAGE_ID, C.DONE_TASKS]
    assert carried[C.DONE_TASKS].tolist() == [["ocr"]]

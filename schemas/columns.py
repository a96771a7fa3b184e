"""Names of the columns passed between pipeline stages (the output columns are LabelRow's fields).

Between stages no column is ever null: "" (strings), b"" (bytes) and 0 (sizes) stand for
"absent", because Ray Data turns an all-null column into float NaN on its way to NumPy. The
label stage turns them back into nulls in the output rows. List columns travel as object arrays of
Python lists (`list_column`), which Ray Data stores as Arrow lists.
"""

import numpy as np

IMAGE_ID = "image_id"
SOURCE_URI = "source_uri"
IMAGE_BYTES = "image_bytes"  # encoded file bytes, read -> decode
QUESTION = "question"  # optional per-image question (answer task) from the input
DONE_TASKS = "done_tasks"  # list of the tasks an earlier attempt already wrote for this image (resume)
PIXELS = "pixels"  # uint8 HxWx3 at the model's resolution, decode -> generate
WIDTH = "width"
HEIGHT = "height"
ERROR = "error"
STATUS = "status"
TASK = "task"
PROMPT = "prompt"
RAW_OUTPUT = "raw_output"
FINISH_REASON = "finish_reason"  # "stop" (end of sequence), "length" (budget spent), "" (nothing generated)
MASK_LOGITS = "mask_logits"  # float32 (n, 64, 64) bytes per row of a mask task, generate -> validate
MASK_SIZE = 64  # the mask decoder's output is MASK_SIZE x MASK_SIZE
# Per generated token of the answer (special tokens and end of sequence left out), generate -> validate:
TOKEN_LOGPROBS = "token_logprobs"  # float32 bytes: natural-log probability of the token
TOKEN_ENDS = "token_ends"  # int32 bytes: where the token's text ends in raw_output, in characters
# ... and at its step, the k most likely tokens, (tokens, k) row-major:
TOKEN_TOP_BINS = "token_top_bins"  # int16 bytes: the <loc> bin of each, -1 for any other token
TOKEN_TOP_LOGPROBS = "token_top_logprobs"  # float32 bytes: the natural-log probability of each


LIST_COLUMNS = (DONE_TASKS,)


def list_column(values) -> np.ndarray:
    """An object array of Python lists, one per row. Ray Data hands an Arrow list column to a NumPy
    step as arrays inside an object array; given back as such, it would be pickled instead of stored
    as an Arrow list, so every step that passes a list column on packs it again with this."""
    column = np.empty(len(values), dtype=object)
    column[:] = [list(value) for value in values]
    return column


def carry(batch: dict[str, np.ndarray], drop: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """The columns of `batch` that a step passes on unchanged (all but `drop`), list columns repacked."""
    return {name: list_column(values) if name in LIST_COLUMNS else values
            for name, values in batch.items() if name not in drop}


def pack_mask_logits(mask_logits: np.ndarray) -> bytes:
    """(n, 64, 64) decoder output -> MASK_LOGITS bytes (b"" when n == 0)."""
    return np.ascontiguousarray(mask_logits, dtype=np.float32).tobytes()


def unpack_mask_logits(packed: bytes) -> np.ndarray:
    """MASK_LOGITS bytes -> (n, 64, 64) float32; ValueError when they are not whole masks."""
    return np.frombuffer(packed, dtype=np.float32).reshape(-1, MASK_SIZE, MASK_SIZE)


def pack_token_logprobs(logprobs: np.ndarray) -> bytes:
    return np.ascontiguousarray(logprobs, dtype=np.float32).tobytes()


def unpack_token_logprobs(packed: bytes) -> np.ndarray:
    return np.frombuffer(packed, dtype=np.float32)


def pack_token_ends(ends: np.ndarray) -> bytes:
    return np.ascontiguousarray(ends, dtype=np.int32).tobytes()


def unpack_token_ends(packed: bytes) -> np.ndarray:
    return np.frombuffer(packed, dtype=np.int32)


def pack_token_top(bins: np.ndarray, logprobs: np.ndarray) -> tuple[bytes, bytes]:
    """(tokens, k) bins and log-probabilities -> TOKEN_TOP_BINS and TOKEN_TOP_LOGPROBS bytes."""
    return (np.ascontiguousarray(bins, dtype=np.int16).tobytes(),
            np.ascontiguousarray(logprobs, dtype=np.float32).tobytes())


def unpack_token_top(bins: bytes, logprobs: bytes, tokens: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The (tokens, k) arrays of `pack_token_top`; None when none were recorded."""
    if not bins or not tokens:
        return None
    return (np.frombuffer(bins, dtype=np.int16).reshape(tokens, -1),
            np.frombuffer(logprobs, dtype=np.float32).reshape(tokens, -1))

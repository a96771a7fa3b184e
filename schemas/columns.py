"""Names of the columns passed between pipeline stages (the output columns are LabelRow's fields).

Between stages no column is ever null: "" (strings), b"" (bytes) and 0 (sizes) stand for
"absent", because Ray Data turns an all-null column into float NaN on its way to NumPy. The
validate stage turns them back into nulls in the output rows.
"""

IMAGE_ID = "image_id"
SOURCE_URI = "source_uri"
IMAGE_BYTES = "image_bytes"  # encoded file bytes, read -> decode
QUESTION = "question"  # optional per-image question (answer task) from the input
PIXELS = "pixels"  # uint8 HxWx3 at the model's resolution, decode -> generate
WIDTH = "width"
HEIGHT = "height"
ERROR = "error"
STATUS = "status"
TASK = "task"
PROMPT = "prompt"
RAW_OUTPUT = "raw_output"
MASK_LOGITS = "mask_logits"  # float32 (n, 64, 64) bytes per row of a mask task, generate -> validate

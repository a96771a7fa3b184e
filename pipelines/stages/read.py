"""Read the input files (found by `storage/inputs.py`) with Ray Data into one row per image.

Every reader ends in the same columns: image_id, source_uri, image_bytes (b"" when the input
has no image, which decode turns into an `image_error` row) and question ("" unless the input
carries per-image questions).
"""

from __future__ import annotations

import hashlib
import math

import numpy as np
import ray.data

from pipelines.storage.filesystems import arrow_filesystem
from pipelines.storage.inputs import IMAGE_EXTENSIONS, InputFiles
from pipelines.storage.redact import redact_uri
from schemas import columns as C
from schemas.job import JobConfig

# The columns every reader ends in: the source of the stage chain (see contract.check_chain).
OUTPUT_COLUMNS = (C.IMAGE_ID, C.SOURCE_URI, C.IMAGE_BYTES, C.QUESTION)


def image_id_for(source_uri: str) -> str:
    """Stable id of an input: the same URI gives the same id on every run and every machine."""
    return hashlib.sha256(source_uri.encode("utf-8")).hexdigest()[:16]


def _is_bytes(value: object) -> bool:
    """True for non-empty encoded data; an all-null column arrives as NaN, not None."""
    return isinstance(value, (bytes, bytearray)) and len(value) > 0


def reader_columns(uris: list[str], images, questions=None, ids: list[str] | None = None) -> dict[str, np.ndarray]:
    """The columns every reader ends in. Credentials in a URI (a password, a signed URL's signature) are
    masked before the URI names anything, so they reach neither `source_uri` nor the id derived from it."""
    uris = [redact_uri(uri) for uri in uris]
    return {
        C.IMAGE_ID: np.array(ids if ids is not None else [image_id_for(u) for u in uris], dtype=object),
        C.SOURCE_URI: np.array(uris, dtype=object),
        C.IMAGE_BYTES: np.array([data if _is_bytes(data) else b"" for data in images], dtype=object),
        C.QUESTION: np.array([q if isinstance(q, str) else "" for q in questions] if questions is not None
                             else [""] * len(uris), dtype=object),
    }


def _image_rows(batch: dict[str, np.ndarray], plan: InputFiles) -> dict[str, np.ndarray]:
    return reader_columns([plan.uri(path) for path in batch["path"]], batch["bytes"])


def image_member(members: list[str]) -> str | None:
    """The member of a WebDataset sample that holds its image: by extension (the last one, any case,
    so `JPG` and `left.png` count), in IMAGE_EXTENSIONS order, then by name; None without one."""
    last = {member: member.rsplit(".", 1)[-1].lower() for member in members}
    ranked = sorted((IMAGE_EXTENSIONS.index(ext), member) for member, ext in last.items() if ext in IMAGE_EXTENSIONS)
    return ranked[0][1] if ranked else None


def _webdataset_rows(batch: dict[str, np.ndarray], plan: InputFiles) -> dict[str, np.ndarray]:
    """One row per WebDataset sample, from its image member (`image_member`). Member names only ever
    name things here: the tar is read in memory, so a `../` name reaches no filesystem."""
    members = [name for name in batch if name not in ("__key__", "__url__")]
    uris, images = [], []
    for i in range(len(batch["__key__"])):
        member = image_member([name for name in members if _is_bytes(batch[name][i])])
        shard = plan.uri(batch["__url__"][i])
        # A sample without an image member keeps a row (it becomes an image_error downstream).
        uris.append(f"{shard}#{batch['__key__'][i]}" + (f".{member}" if member else ""))
        images.append(batch[member][i] if member else b"")
    return reader_columns(uris, images)


def _parquet_rows(batch: dict[str, np.ndarray], plan: InputFiles, cfg: JobConfig) -> dict[str, np.ndarray]:
    if cfg.uri_column:
        uris = [str(u) for u in batch[cfg.uri_column]]
    else:
        # Without a URI column a row is named by its file and position (Ray's row hash, the same on
        # every read): two rows holding the same image are two inputs, each annotated once.
        uris = [f"{plan.uri(path)}#row={int(row_hash):016x}"
                for path, row_hash in zip(batch["path"], batch["row_hash"])]
    return reader_columns(uris, batch[cfg.image_column],
                          questions=batch[cfg.question_column] if cfg.question_column else None,
                          ids=[str(i) for i in batch[cfg.id_column]] if cfg.id_column else None)


def read_images(plan: InputFiles, cfg: JobConfig) -> ray.data.Dataset:
    """A Dataset with one row per input image, columns as in this module's docstring."""
    filesystem = arrow_filesystem(plan.filesystem)
    if plan.kind == "images":
        ds = ray.data.read_binary_files(plan.paths, filesystem=filesystem, include_paths=True,
                                        override_num_blocks=math.ceil(len(plan.paths) / cfg.images_per_block))
        return ds.map_batches(_image_rows, fn_kwargs={"plan": plan}, batch_format="numpy")
    if plan.kind == "webdataset":
        ds = ray.data.read_webdataset(plan.paths, filesystem=filesystem, decoder=None, include_paths=False)
        return ds.map_batches(_webdataset_rows, fn_kwargs={"plan": plan}, batch_format="numpy")
    wanted = [cfg.image_column, cfg.id_column, cfg.uri_column, cfg.question_column]
    ds = ray.data.read_parquet(
        plan.paths, filesystem=filesystem, columns=[c for c in wanted if c], include_paths=True,
        include_row_hash=not cfg.uri_column,
    )
    return ds.map_batches(_parquet_rows, fn_kwargs={"plan": plan, "cfg": cfg}, batch_format="numpy")

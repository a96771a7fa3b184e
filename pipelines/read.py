"""Find the input files and read them with Ray Data into one row per image.

Every reader ends in the same columns: image_id, source_uri, image_bytes (b"" when the input
has no image, which decode turns into an `image_error` row) and question ("" unless the input
carries per-image questions).
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Literal

import fsspec
import numpy as np
import pyarrow.parquet as pq
import ray.data

from pipelines.listing import ListingError, TimeWindow, missing_files, read_manifest
from pipelines.redact import redact_uri
from pipelines.storage import arrow_filesystem
from schemas import columns as C
from schemas.job import JobConfig

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
_KIND_BY_EXTENSION = {**{ext: "images" for ext in IMAGE_EXTENSIONS}, "tar": "webdataset", "parquet": "parquet"}

InputKind = Literal["images", "webdataset", "parquet"]


class InputError(ValueError):
    """The input cannot be read as asked (missing path, nothing to read, mixed kinds)."""


@dataclass(frozen=True)
class InputPlan:
    """The resolved input: which reader, which files, on which filesystem."""

    kind: InputKind
    paths: list[str]  # in the filesystem's own form (no scheme for object stores)
    filesystem: fsspec.AbstractFileSystem
    ignored: int  # files found next to the inputs whose extension is not of the input kind
    outside_window: int = 0  # input files left out by --since/--until

    def uri(self, path: str) -> str:
        """A path as a full URI with its scheme, as recorded in `source_uri`."""
        return self.filesystem.unstrip_protocol(path)


def image_id_for(source_uri: str) -> str:
    """Stable id of an input: the same URI gives the same id on every run and every machine."""
    return hashlib.sha256(source_uri.encode("utf-8")).hexdigest()[:16]


def _extension(path: str) -> str:
    return path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""


def _select_kind(paths: list[str], input_format: str, source: str) -> tuple[InputKind, list[str], int]:
    """Pick the input kind (by extension unless forced) and its paths; the rest are counted as ignored."""
    kinds = {path: _KIND_BY_EXTENSION.get(_extension(path)) for path in sorted(paths)}
    if input_format == "auto":
        present = sorted({kind for kind in kinds.values() if kind})
        if len(present) > 1:
            raise InputError(f"{source} holds several input kinds ({', '.join(present)}); pass --input-format")
        if not present:
            raise InputError(f"no images, .tar shards or .parquet files found under {source}")
        input_format = present[0]
    chosen = [path for path, kind in kinds.items() if kind == input_format]
    return input_format, chosen, len(kinds) - len(chosen)


def resolve_inputs(uri: str, input_format: str = "auto", window: TimeWindow | None = None) -> InputPlan:
    """List the files under `uri` (a file, a directory searched recursively, or a glob).

    With a time `window`, only files modified inside it are kept (`outside_window` counts the
    others); the kind is picked from the whole listing, and finding nothing new is not an error.
    """
    filesystem, root = fsspec.core.url_to_fs(uri)
    if any(char in root for char in "*?["):
        found = {p: info for p, info in filesystem.glob(root, detail=True).items() if info.get("type") == "file"}
    elif filesystem.isdir(root):
        found = filesystem.find(root, detail=True)
    elif filesystem.exists(root):
        found = {root: filesystem.info(root)}
    else:
        raise InputError(f"input not found: {uri}")
    kind, paths, ignored = _select_kind(list(found), input_format, uri)
    if not paths:
        raise InputError(f"no {kind} inputs found under {uri}")
    if not window:
        return InputPlan(kind=kind, paths=paths, filesystem=filesystem, ignored=ignored)
    try:
        inside = [path for path in paths if window.contains(path, found[path])]
    except ListingError as err:
        raise InputError(str(err)) from None
    return InputPlan(kind=kind, paths=inside, filesystem=filesystem, ignored=ignored,
                     outside_window=len(paths) - len(inside))


def resolve_manifest(uri: str, column: str = "uri", input_format: str = "auto") -> InputPlan:
    """The files listed in a manifest; every one must exist, on one filesystem."""
    try:
        uris = read_manifest(uri, column)
    except ListingError as err:
        raise InputError(str(err)) from None
    if not uris:
        raise InputError(f"input manifest {uri} lists no files")
    protocols = sorted({fsspec.utils.get_protocol(entry) for entry in uris})
    if len(protocols) > 1:
        raise InputError(f"input manifest {uri} mixes filesystems ({', '.join(protocols)}); use one per run")
    filesystem = fsspec.core.url_to_fs(uris[0])[0]
    kind, paths, ignored = _select_kind([filesystem._strip_protocol(entry) for entry in uris], input_format, uri)
    if not paths:
        raise InputError(f"input manifest {uri} lists no {kind} inputs")
    missing = missing_files(filesystem, paths)
    if missing:
        raise InputError(f"input manifest {uri} lists {len(missing)} missing file(s), first "
                         f"{filesystem.unstrip_protocol(missing[0])}")
    return InputPlan(kind=kind, paths=paths, filesystem=filesystem, ignored=ignored)


def resolve_job_inputs(cfg: JobConfig) -> InputPlan:
    """The input of a job: its manifest, or the listing of --input within --since/--until."""
    if cfg.input_manifest:
        return resolve_manifest(cfg.input_manifest, cfg.manifest_column, cfg.input_format)
    return resolve_inputs(cfg.input, cfg.input_format, TimeWindow(cfg.since, cfg.until))


def _is_bytes(value: object) -> bool:
    """True for non-empty encoded data; an all-null column arrives as NaN, not None."""
    return isinstance(value, (bytes, bytearray)) and len(value) > 0


def check_parquet_columns(plan: InputPlan, cfg: JobConfig) -> None:
    """Fail before any work when the first Parquet file lacks a column the flags name."""
    if plan.kind != "parquet":
        return
    with plan.filesystem.open(plan.paths[0], "rb") as handle:
        present = set(pq.read_schema(handle).names)
    named = {"--image-column": cfg.image_column, "--id-column": cfg.id_column, "--uri-column": cfg.uri_column,
             "--question-column": cfg.question_column}
    missing = [f"{flag} {column!r}" for flag, column in named.items() if column and column not in present]
    if missing:
        raise InputError(f"{plan.uri(plan.paths[0])} has no column {', '.join(missing)}; "
                         f"its columns are {', '.join(sorted(present))}")


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


def _image_rows(batch: dict[str, np.ndarray], plan: InputPlan) -> dict[str, np.ndarray]:
    return reader_columns([plan.uri(path) for path in batch["path"]], batch["bytes"])


def image_member(members: list[str]) -> str | None:
    """The member of a WebDataset sample that holds its image: by extension (the last one, any case,
    so `JPG` and `left.png` count), in IMAGE_EXTENSIONS order, then by name; None without one."""
    last = {member: member.rsplit(".", 1)[-1].lower() for member in members}
    ranked = sorted((IMAGE_EXTENSIONS.index(ext), member) for member, ext in last.items() if ext in IMAGE_EXTENSIONS)
    return ranked[0][1] if ranked else None


def _webdataset_rows(batch: dict[str, np.ndarray], plan: InputPlan) -> dict[str, np.ndarray]:
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


def _parquet_rows(batch: dict[str, np.ndarray], plan: InputPlan, cfg: JobConfig) -> dict[str, np.ndarray]:
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


def read_images(plan: InputPlan, cfg: JobConfig) -> ray.data.Dataset:
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

"""The input files of a job, found before Ray starts: a listing of --input (a file, a directory, a glob;
within --since/--until) or an --input-manifest, with the input kind picked from the extensions. No Ray:
`--plan` and the job's checks use it, and `stages/read.py` reads what it found."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import fsspec
import pyarrow.parquet as pq

from pipelines.storage.listing import ListingError, TimeWindow, missing_files, read_manifest
from schemas.job import JobConfig

IMAGE_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "bmp", "tif", "tiff", "gif")
_KIND_BY_EXTENSION = {**{ext: "images" for ext in IMAGE_EXTENSIONS}, "tar": "webdataset", "parquet": "parquet"}

InputKind = Literal["images", "webdataset", "parquet"]


class InputError(ValueError):
    """The input cannot be read as asked (missing path, nothing to read, mixed kinds)."""


@dataclass(frozen=True)
class InputFiles:
    """The resolved input: which reader, which files, on which filesystem (`--plan` and the readers use it)."""

    kind: InputKind
    paths: list[str]  # in the filesystem's own form (no scheme for object stores)
    filesystem: fsspec.AbstractFileSystem
    ignored: int  # files found next to the inputs whose extension is not of the input kind
    outside_window: int = 0  # input files left out by --since/--until

    def uri(self, path: str) -> str:
        """A path as a full URI with its scheme, as recorded in `source_uri`."""
        return self.filesystem.unstrip_protocol(path)


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


def resolve_inputs(uri: str, input_format: str = "auto", window: TimeWindow | None = None) -> InputFiles:
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
        return InputFiles(kind=kind, paths=paths, filesystem=filesystem, ignored=ignored)
    try:
        inside = [path for path in paths if window.contains(path, found[path])]
    except ListingError as err:
        raise InputError(str(err)) from None
    return InputFiles(kind=kind, paths=inside, filesystem=filesystem, ignored=ignored,
                     outside_window=len(paths) - len(inside))


def resolve_manifest(uri: str, column: str = "uri", input_format: str = "auto") -> InputFiles:
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
    return InputFiles(kind=kind, paths=paths, filesystem=filesystem, ignored=ignored)


def resolve_job_inputs(cfg: JobConfig) -> InputFiles:
    """The input of a job: its manifest, or the listing of --input within --since/--until."""
    if cfg.input_manifest:
        return resolve_manifest(cfg.input_manifest, cfg.manifest_column, cfg.input_format)
    return resolve_inputs(cfg.input, cfg.input_format, TimeWindow(cfg.since, cfg.until))


def check_parquet_columns(plan: InputFiles, cfg: JobConfig) -> None:
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

"""Which work an earlier attempt finished, found per input file, so that resuming costs memory for the
work that was in flight when it stopped, not for all the work it had done.

The unit is the input file, as datatrove's unit of completion is its task: an image file, a WebDataset
shard or a Parquet file. Every row names its input file (`source_uri` is the file's URI, or the shard's
followed by `#`), and every (image, task, prompt) is exactly one row, so counting an earlier attempt's
rows per (input file, task) against what the file holds tells, without keeping one image id:
- every task complete: the file is finished and is not even read again;
- some rows: the file was in flight; only its rows' image ids are collected, for `stages/resume.py`
  to skip the (image, task) pairs already written;
- none: the file is read as on a first run.
Two jobs cannot be counted so, and for them every written image id is collected, as before (memory
grows with the rows written): Parquet inputs named by --uri-column (their `source_uri` does not name
their file), and per-image questions (the rows an image gets depend on whether it has one).
"""

from __future__ import annotations

import tarfile
from collections import Counter
from dataclasses import dataclass, field

import fsspec
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipelines.storage.inputs import InputFiles
from pipelines.storage.output import WrittenFile
from pipelines.storage.redact import redact_uri
from pipelines.tasks.base import TaskSpec
from schemas.job import PromptOptions


@dataclass(frozen=True)
class Resume:
    """What a resumed run skips."""

    finished_paths: frozenset[str] = frozenset()  # input files whose every task is written
    finished: dict[str, frozenset[str]] = field(default_factory=dict)  # image_id -> tasks, of files in flight
    images_finished: int = 0  # images whose every task is written (both kinds)


def countable(kind: str, uri_column: str | None, options: PromptOptions) -> bool:
    """Whether rows can be counted per input file (see the module docstring)."""
    return not (kind == "parquet" and uri_column) and not options.per_image_questions


def input_file_of(source_uris, kind: str):
    """The input file URI of each `source_uri` (an Arrow string array): the URI itself for image files,
    the part before the first `#` for shards."""
    if kind == "images":
        return source_uris
    return pc.list_element(pc.split_pattern(source_uris, "#", max_splits=1), 0)


def rows_per_image(task: TaskSpec, options: PromptOptions) -> int:
    """Rows one image gets for `task`: one per prompt, or one image_error row when it has none."""
    return max(1, len(task.build_prompts(options, None)))


def images_in_file(filesystem: fsspec.AbstractFileSystem, path: str, kind: str) -> int:
    """The images (rows) a reader makes of one input file: 1, a Parquet file's rows from its footer, or a
    tar's samples (its regular members grouped by key, as Ray's WebDataset reader groups them)."""
    if kind == "images":
        return 1
    with filesystem.open(path, "rb") as handle:
        if kind == "parquet":
            return pq.ParquetFile(handle).metadata.num_rows
        with tarfile.open(fileobj=handle, mode="r:") as tar:  # headers only: member data is skipped
            return len({key for member in tar if member.isreg() and (key := sample_key(member.name))})


def sample_key(member: str) -> str | None:
    """A WebDataset member's sample key, by the rule Ray's reader applies: its path up to the first `.` of
    its base name (`a/b.seg.png` -> `a/b`); None for a name without one, which the reader skips."""
    directory, slash, base = member.rpartition("/")
    stem, dot, _ = base.partition(".")
    return directory + slash + stem if stem and dot else None


def count_rows(filesystem: fsspec.AbstractFileSystem, written: list[WrittenFile], kind: str) -> Counter:
    """Rows written per (input file URI, task), one output file at a time."""
    counts: Counter = Counter()
    for file in written:
        with filesystem.open(file.path, "rb") as handle:
            uris = pq.read_table(handle, columns=["source_uri"]).column("source_uri").combine_chunks()
        for entry in pc.value_counts(input_file_of(uris, kind)).to_pylist():
            counts[(entry["values"], file.task)] += entry["counts"]
    return counts


def collect_finished(filesystem: fsspec.AbstractFileSystem, written: list[WrittenFile], kind: str,
                     in_files: set[str] | None) -> dict[str, frozenset[str]]:
    """image_id -> written tasks, for the rows of `in_files` (input file URIs; None: every row)."""
    finished: dict[str, set[str]] = {}
    for file in written:
        with filesystem.open(file.path, "rb") as handle:
            table = pq.read_table(handle, columns=["image_id", "source_uri"])
        if in_files is not None:
            if not in_files:
                break
            table = table.filter(pc.is_in(input_file_of(table.column("source_uri"), kind),
                                          value_set=pc.cast(list(in_files), "string")))
        for image_id in table.column("image_id").to_pylist():
            finished.setdefault(image_id, set()).add(file.task)
    return {image_id: frozenset(tasks) for image_id, tasks in finished.items()}


def plan_resume(filesystem: fsspec.AbstractFileSystem, written: list[WrittenFile], inputs: InputFiles,
                tasks: list[TaskSpec], options: PromptOptions, uri_column: str | None) -> Resume:
    """What to skip, from the files an earlier attempt wrote (`storage.output.begin_run`)."""
    if not written:
        return Resume()
    names = [task.name for task in tasks]
    if not countable(inputs.kind, uri_column, options):
        finished = collect_finished(filesystem, written, inputs.kind, None)
        return Resume(frozenset(), finished, sum(1 for done in finished.values() if done.issuperset(names)))
    counts = count_rows(filesystem, written, inputs.kind)
    per_image = {task.name: rows_per_image(task, options) for task in tasks}
    finished_paths, in_flight, images = set(), set(), 0
    for path in inputs.paths:
        uri = redact_uri(inputs.uri(path))  # as the readers write it in source_uri
        rows = {name: counts.get((uri, name), 0) for name in names}
        if not any(rows.values()):
            continue
        held = images_in_file(inputs.filesystem, path, inputs.kind)
        if all(rows[name] >= held * per_image[name] for name in names):
            finished_paths.add(path)
            images += held
        else:
            in_flight.add(uri)
    finished = collect_finished(filesystem, written, inputs.kind, in_flight)
    images += sum(1 for done in finished.values() if done.issuperset(names))
    return Resume(frozenset(finished_paths), finished, images)

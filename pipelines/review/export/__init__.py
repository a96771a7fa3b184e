"""Hand an annotation dataset to labelling tools: Label Studio tasks JSON and COCO JSON, streamed."""

from __future__ import annotations

from pipelines.review.export.coco import LAYOUTS, export_coco, export_coco_shards
from pipelines.review.export.labelstudio import export_labelstudio
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, RowFilter, UrlMap

FORMATS = {"labelstudio": export_labelstudio, "coco": export_coco}


def export(fmt: str, uri: str, output: str, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
           batch_size: int = DEFAULT_BATCH_SIZE, label_config: str | None = None,
           shard_size: int | None = None, coco_layout: str = "file") -> str:
    """Write `uri`'s rows to `output` in `fmt` (and, for Label Studio, its labelling config to
    `label_config`); with `shard_size`, `output` is a folder that gets files of at most that many tasks
    or images each; COCO with `coco_layout="datumaro"` is a folder in datumaro's layout, images copied.
    Returns a one-line summary of what was written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if shard_size is not None and shard_size < 1:
        raise ValueError(f"--shard-size must be at least 1, not {shard_size}")
    if coco_layout not in LAYOUTS:
        raise ValueError(f"unknown COCO layout {coco_layout!r}; choose from {', '.join(LAYOUTS)}")
    if coco_layout != "file" and fmt != "coco":
        raise ValueError("--coco-layout is the COCO export's folder layout; it needs --format coco")
    if fmt == "labelstudio":
        counts = export_labelstudio(uri, output, row_filter, urls, batch_size, label_config, shard_size)
        config = f"; labelling config to {label_config}" if label_config else ""
        where = output if shard_size is None else f"{counts['files']} files of at most {shard_size} tasks in {output}"
        return (f"wrote {counts['tasks']} Label Studio tasks (one per image: {counts['rows']} rows, "
                f"{counts['regions']} regions, {counts['rows_not_ok']} rows not ok) to {where}{config}")
    if label_config is not None:
        raise ValueError("--label-config is a Label Studio labelling config; it needs --format labelstudio")
    if shard_size is not None:
        written = export_coco_shards(uri, output, shard_size, row_filter, urls, batch_size, coco_layout)
    else:
        written = export_coco(uri, output, row_filter, urls, batch_size, coco_layout)
    note = written.pop("first_image_not_copied", None)
    layout = " in datumaro's layout" if coco_layout == "datumaro" else ""
    return (f"wrote {', '.join(f'{n} {name}' for name, n in written.items())} (COCO) to {output}{layout}"
            + (f"; first image not copied: {note}" if note else ""))

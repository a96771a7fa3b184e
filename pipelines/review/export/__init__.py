"""Hand an annotation dataset to labelling tools: Label Studio tasks JSON and COCO JSON, streamed."""

from __future__ import annotations

from pipelines.review.export.coco import export_coco
from pipelines.review.export.labelstudio import export_labelstudio
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, RowFilter, UrlMap

FORMATS = {"labelstudio": export_labelstudio, "coco": export_coco}


def export(fmt: str, uri: str, output: str, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
           batch_size: int = DEFAULT_BATCH_SIZE, label_config: str | None = None) -> str:
    """Write `uri`'s rows to `output` in `fmt` (and, for Label Studio, its labelling config to
    `label_config`); returns a one-line summary of what was written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if fmt == "labelstudio":
        counts = export_labelstudio(uri, output, row_filter, urls, batch_size, label_config)
        config = f"; labelling config to {label_config}" if label_config else ""
        return (f"wrote {counts['tasks']} Label Studio tasks (one per image: {counts['rows']} rows, "
                f"{counts['regions']} regions, {counts['rows_not_ok']} rows not ok) to {output}{config}")
    if label_config is not None:
        raise ValueError("--label-config is a Label Studio labelling config; it needs --format labelstudio")
    written = export_coco(uri, output, row_filter, urls, batch_size)
    return f"wrote {', '.join(f'{n} {name}' for name, n in written.items())} (COCO) to {output}"

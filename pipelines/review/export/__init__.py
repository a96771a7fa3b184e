"""Hand an annotation dataset to labelling tools: Label Studio tasks JSON and COCO JSON, streamed."""

from __future__ import annotations

from pipelines.review.export.coco import export_coco
from pipelines.review.export.labelstudio import export_labelstudio
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, RowFilter, UrlMap

FORMATS = {"labelstudio": export_labelstudio, "coco": export_coco}


def export(fmt: str, uri: str, output: str, row_filter: RowFilter = RowFilter(), urls: UrlMap = UrlMap(),
           batch_size: int = DEFAULT_BATCH_SIZE) -> str:
    """Write `uri`'s rows to `output` in `fmt`; returns a one-line summary of what was written."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    written = FORMATS[fmt](uri, output, row_filter, urls, batch_size)
    if isinstance(written, int):
        return f"wrote {written} Label Studio tasks to {output}"
    return f"wrote {', '.join(f'{n} {name}' for name, n in written.items())} (COCO) to {output}"

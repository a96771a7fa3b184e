"""A static HTML report of an annotation dataset: counts per task and status, score histograms,
the most frequent labels, and a gallery of sampled images with their annotations drawn (PNG).

One pass over the dataset in batches; memory holds the counters and the rows of the sampled
images only. Images are sampled by a hash of `image_id` (the same images on every run) and shown
doubtful first: ordered by their lowest score.
"""

from __future__ import annotations

import hashlib
import heapq
import html
import textwrap
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines.review.acceptance import OUTCOMES, describe_best, describe_texts
from pipelines.review.export.source import DEFAULT_BATCH_SIZE, iter_rows, source_bytes
from pipelines.stages.decode import displayed_image
from schemas.annotations import Rle

COLUMNS = ["image_id", "source_uri", "width", "height", "task", "prompt", "status", "error", "boxes", "masks",
           "text", "text_score"]
BINS = np.linspace(0.0, 1.0, 11)
GALLERY_SIDE = 480  # longest side of a gallery image, pixels
TOP_LABELS = 15
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60)]


@dataclass
class Tally:
    """What the report counts while it reads the dataset."""

    rows: Counter = field(default_factory=Counter)  # (task, status) -> rows
    scores: dict[str, np.ndarray] = field(default_factory=lambda: defaultdict(lambda: np.zeros(len(BINS) - 1, int)))
    unscored: Counter = field(default_factory=Counter)
    labels: dict[str, Counter] = field(default_factory=lambda: defaultdict(Counter))

    def add(self, row: dict) -> None:
        self.rows[(row["task"], row["status"])] += 1
        for kind, items in (("box", row["boxes"] or []), ("mask", row["masks"] or [])):
            for item in items:
                self._score(kind, item["score"])
            if kind == "box":
                self.labels[row["task"]].update(item["label"] for item in items)
        if row["text"]:
            self._score("text", row["text_score"])

    def _score(self, kind: str, score: float | None) -> None:
        if score is None:
            self.unscored[kind] += 1
        else:
            self.scores[kind] += np.histogram([score], BINS)[0]


class Sample:
    """The rows of the `size` images whose `image_id` hashes lowest: a fixed, uniform sample."""

    def __init__(self, size: int):
        self.size = size
        self._heap: list[tuple[int, str]] = []  # (-hash, image_id): the largest kept hash on top
        self.rows: dict[str, list[dict]] = {}

    def add(self, row: dict) -> None:
        if row["width"] is None:  # unreadable: nothing to draw
            return
        image_id = row["image_id"]
        if image_id in self.rows:
            self.rows[image_id].append(row)
            return
        rank = int(hashlib.sha256(image_id.encode()).hexdigest()[:15], 16)
        if len(self._heap) < self.size:
            heapq.heappush(self._heap, (-rank, image_id))
        elif rank < -self._heap[0][0]:
            _, dropped = heapq.heapreplace(self._heap, (-rank, image_id))
            del self.rows[dropped]
        else:
            return
        self.rows[image_id] = [row]


def lowest_score(rows: list[dict]) -> float:
    scores = [item["score"] for row in rows for item in [*(row["boxes"] or []), *(row["masks"] or [])]]
    scores += [row["text_score"] for row in rows if row["text"]]
    known = [score for score in scores if score is not None]
    return min(known) if known else 1.0


def read_image(source_uri: str) -> Image.Image:
    """The image a row came from, as the pipeline saw it (`decode.displayed_image`)."""
    return displayed_image(source_bytes(source_uri))


def draw_image(rows: list[dict]) -> Image.Image:
    """The image with every row's masks, boxes (label and score) and texts drawn, scaled down."""
    first = rows[0]
    try:
        image = read_image(first["source_uri"])
    except Exception as err:  # a missing image still gets a card that says why
        image = Image.new("RGB", (first["width"], first["height"]), (235, 235, 235))
        ImageDraw.Draw(image).text((4, 4), f"image not available: {type(err).__name__}", fill=(90, 90, 90))
    scale = min(1.0, GALLERY_SIDE / max(image.size))
    shown = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
    overlay = Image.new("RGBA", shown.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    font = ImageFont.load_default()
    colour_of: dict[str, tuple[int, int, int]] = {}
    texts = []
    for row in rows:
        for mask in row["masks"] or []:
            colour = colour_of.setdefault(mask["label"], PALETTE[len(colour_of) % len(PALETTE)])
            pixels = Rle.model_construct(size=mask["rle"]["size"], counts=mask["rle"]["counts"]).to_binary()
            alpha = Image.fromarray(pixels.astype(np.uint8) * 110).resize(shown.size, Image.NEAREST)
            overlay.paste(Image.new("RGBA", shown.size, (*colour, 255)), mask=alpha)
        for box in row["boxes"] or []:
            colour = colour_of.setdefault(box["label"], PALETTE[len(colour_of) % len(PALETTE)])
            corners = [box["x_min"] * scale, box["y_min"] * scale, box["x_max"] * scale, box["y_max"] * scale]
            draw.rectangle(corners, outline=(*colour, 255), width=2)
            score = "" if box["score"] is None else f" {box['score']:.2f}"
            draw.text((corners[0] + 3, corners[1] + 2), f"{box['label']}{score}", fill=(*colour, 255), font=font)
        if row["text"]:
            score = "" if row["text_score"] is None else f" ({row['text_score']:.2f})"
            texts.append(f"{row['task']}{score}: {row['text']}")
    shown = Image.alpha_composite(shown.convert("RGBA"), overlay).convert("RGB")
    lines = [line for text in texts for line in textwrap.wrap(text, width=max(20, shown.width // 7))][:8]
    if not lines:
        return shown
    card = Image.new("RGB", (shown.width, shown.height + 14 * len(lines) + 8), (255, 255, 255))
    card.paste(shown, (0, 0))
    for number, line in enumerate(lines):
        ImageDraw.Draw(card).text((4, shown.height + 4 + 14 * number), line, fill=(20, 20, 20), font=font)
    return card


def histogram_svg(counts: np.ndarray, title: str, width: int = 320, height: int = 140) -> str:
    """Bars over [0, 1] in inline SVG, one per tenth, with the counts on top."""
    top = max(int(counts.max()), 1)
    bar = (width - 20) / len(counts)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img">',
             f"<title>{html.escape(title)}</title>"]
    for number, count in enumerate(counts):
        bar_height = (height - 40) * count / top
        x, y = 10 + number * bar, height - 20 - bar_height
        parts.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{bar_height:.1f}" fill="#4c72b0"/>')
        parts.append(f'<text x="{x + bar / 2:.1f}" y="{y - 3:.1f}" font-size="10" text-anchor="middle">{count}</text>')
    parts.append(f'<text x="10" y="{height - 5}" font-size="10">0</text>')
    parts.append(f'<text x="{width - 10}" y="{height - 5}" font-size="10" text-anchor="end">1</text>')
    parts.append("</svg>")
    return "".join(parts)


def build_report(uri: str, output: str | Path, samples: int = 12, batch_size: int = DEFAULT_BATCH_SIZE,
                 acceptance: dict | None = None) -> dict:
    """Write `output/index.html` and `output/gallery/*.png` for the dataset at `uri`; returns counts. With
    `acceptance` (`pipelines.review.acceptance.acceptance` against a review), the page shows its table."""
    output = Path(output)
    (output / "gallery").mkdir(parents=True, exist_ok=True)
    tally, sample = Tally(), Sample(samples)
    for rows in iter_rows(uri, COLUMNS, batch_size=batch_size):
        for row in rows:
            tally.add(row)
            sample.add(row)
    cards = sorted(sample.rows.values(), key=lambda rows: (lowest_score(rows), rows[0]["image_id"]))
    figures = []
    for number, rows in enumerate(cards):
        name = f"gallery/{number:03d}.png"
        draw_image(rows).save(output / name)
        tasks = ", ".join(sorted({f"{r['task']} ({r['status']})" for r in rows}))
        figures.append(f'<figure><img src="{name}" alt="{html.escape(rows[0]["source_uri"])}">'
                       f"<figcaption>{html.escape(rows[0]['source_uri'])}<br>{html.escape(tasks)}<br>"
                       f"lowest score {lowest_score(rows):.2f}</figcaption></figure>")
    (output / "index.html").write_text(_page(uri, tally, figures, acceptance_html(acceptance or {})))
    return {"rows": sum(tally.rows.values()), "images_drawn": len(figures), "output": str(output / "index.html")}


def acceptance_html(report: dict) -> str:
    """The acceptance report as HTML tables: per object task, a row per class and the total; per text task, one
    line. Empty without a report."""
    parts = []
    for task, entry in sorted(report.items()):
        if "edited" in entry:
            parts.append(f"<p>{html.escape(task)}: {describe_texts(entry)}</p>")
            continue
        head = "".join(f"<th>{kind}</th>" for kind in (*OUTCOMES, "added"))
        lines = [(label, per) for label, per in sorted(entry["per_class"].items())] + [("all", entry)]
        body = "".join(f"<tr><td>{html.escape(label)}</td>" + "".join(f"<td>{per[kind]}</td>"
                                                                     for kind in (*OUTCOMES, "added")) + "</tr>"
                       for label, per in lines)
        tip = f"<p>{html.escape(best)}</p>" if (best := describe_best(entry)) else ""
        parts.append(f"<h3>{html.escape(task)}</h3><table><tr><th>class</th>{head}</tr>{body}</table>{tip}")
    return "<h2>Pre-labels after review</h2>" + "".join(parts) if parts else ""


def _page(uri: str, tally: Tally, figures: list[str], acceptance: str = "") -> str:
    tasks = sorted({task for task, _ in tally.rows})
    statuses = sorted({status for _, status in tally.rows})
    head = "".join(f"<th>{html.escape(s)}</th>" for s in statuses)
    body = "".join(f"<tr><td>{html.escape(task)}</td>"
                   + "".join(f"<td>{tally.rows.get((task, s), 0)}</td>" for s in statuses)
                   + f"<td>{sum(tally.rows.get((task, s), 0) for s in statuses)}</td></tr>" for task in tasks)
    histograms = "".join(
        f"<div class='hist'><h3>{kind} scores</h3>{histogram_svg(counts, kind + ' scores')}"
        f"<p>{int(counts.sum())} scored, {tally.unscored[kind]} without a score</p></div>"
        for kind, counts in sorted(tally.scores.items()))
    labels = "".join(
        f"<div class='labels'><h3>{html.escape(task)}</h3><ol>"
        + "".join(f"<li>{html.escape(label)}: {count}</li>" for label, count in counter.most_common(TOP_LABELS))
        + "</ol></div>" for task, counter in sorted(tally.labels.items()) if counter)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Annotation report: {html.escape(uri)}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; }}
td:first-child {{ text-align: left; }}
.row {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
figure {{ display: inline-block; margin: 0 1em 1em 0; vertical-align: top; max-width: {GALLERY_SIDE}px; }}
figcaption {{ font-size: 12px; word-break: break-all; }}
</style></head><body>
<h1>Annotation report</h1>
<p>{html.escape(uri)}: {sum(tally.rows.values())} rows.</p>
<h2>Rows per task and status</h2>
<table><tr><th>task</th>{head}<th>all</th></tr>{body}</table>
<h2>Scores</h2><div class="row">{histograms or "<p>no scores</p>"}</div>
<h2>Most frequent labels</h2><div class="row">{labels or "<p>no labels</p>"}</div>
{acceptance}
<h2>Gallery: {len(figures)} sampled images, lowest score first</h2>
<div>{"".join(figures) or "<p>no readable images</p>"}</div>
</body></html>
"""

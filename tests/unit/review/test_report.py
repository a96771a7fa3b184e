"""The HTML report: what it counts and the images it draws (tests/integration/test_report_render.py renders it)."""

import copy
import json
import re

import numpy as np
from PIL import Image

from pipelines.review.report import BINS, draw_image, histogram_svg
from tests.jobs import load_job

# Sets data-images="loaded/total" on <body> once the page has loaded; injected into a copy of the
# page by the test only (the report itself has no script).


def test_the_report_counts_rows_and_samples_images(report):
    directory, rows, summary = report
    page = (directory / "index.html").read_text()
    assert summary == {"rows": len(rows), "images_drawn": 4, "output": str(directory / "index.html")}
    assert "<tr><td>detect</td><td>1</td><td>6</td><td>7</td></tr>" in page  # image_error, ok, all
    assert "<tr><td>caption</td><td>0</td><td>6</td><td>6</td></tr>" in page
    assert page.count("<figure>") == 4 and len(list((directory / "gallery").glob("*.png"))) == 4
    boxes = sum(len(r.boxes) for r in rows if r.task == "detect")
    assert f"{2 * boxes} scored, 0 without a score" in page  # detect and segment boxes
    lowest = [float(v) for v in re.findall(r"lowest score ([0-9.]+)", page)]
    assert lowest == sorted(lowest)  # doubtful first


def test_gallery_images_have_the_annotations_drawn(report):
    _, rows, _ = report
    image_rows = [r.model_dump() for r in rows if r.image_id == rows[0].image_id]
    drawn = np.asarray(draw_image(image_rows))
    original = np.asarray(Image.open(rows[0].source_uri).convert("RGB"))
    box = image_rows[0]["boxes"][0]
    x0, y0 = int(box["x_min"]), int(box["y_min"])
    assert not np.array_equal(drawn[y0, x0:int(box["x_max"])], original[y0, x0:int(box["x_max"])])  # the outline
    assert drawn.shape[0] > original.shape[0]  # the caption's band below the image


def test_histograms_are_svg_bars_with_counts():
    svg = histogram_svg(np.array([0, 2, 0, 0, 0, 0, 0, 0, 0, 5]), "box scores")
    assert svg.startswith("<svg") and svg.count("<rect") == len(BINS) - 1 and ">5</text>" in svg


def test_given_a_review_the_report_shows_what_it_did_with_the_pre_labels(labelled, reviewed, tmp_path):
    dataset, _, _ = labelled
    _, tasks = reviewed
    tasks = copy.deepcopy(tasks)
    # the first task with boxes (task order follows image ids, hashes of temporary paths)
    result = next(t for t in tasks if any(r["from_name"] == "detect" for r in t["annotations"][0]["result"])
                  )["annotations"][0]["result"]
    result.remove(next(region for region in result if region["from_name"] == "detect"))  # one box deleted
    (tmp_path / "review.json").write_text(json.dumps(tasks))
    job = load_job("report")
    assert job.main(["--input", str(dataset), "--output", str(tmp_path / "report"),
                     "--ground-truth", str(tmp_path / "review.json")]) == 0
    page = (tmp_path / "report" / "index.html").read_text()
    assert "Pre-labels after review" in page and "best --min-score" in page
    detect = page[page.index("<h3>detect</h3>"):].split("</table>")[0]
    total = detect[detect.index("<td>all</td>"):]
    assert total.startswith("<td>all</td><td>") and "</td><td>1</td><td>0</td></tr>" in total  # deleted 1, added 0

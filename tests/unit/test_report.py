"""The HTML report: what it counts, the images it draws, and that a browser renders it with them."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipelines.report import BINS, build_report, draw_image, histogram_svg
from tests.labelled import shapes_rows, write_rows

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Sets data-images="loaded/total" on <body> once the page has loaded; injected into a copy of the
# page by the test only (the report itself has no script).
PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const loaded = images.filter(img => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.images = loaded + "/" + images.length;
});</script>"""


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    rows, truth = shapes_rows(root / "shapes")
    summary = build_report(str(write_rows(rows, root / "dataset")), root / "report", samples=4)
    return root / "report", rows, summary


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


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


def test_chromium_renders_the_report_with_all_its_images(report, tmp_path):
    directory, _, _ = report
    probe = directory / "probe.html"
    probe.write_text((directory / "index.html").read_text().replace("</body>", PROBE + "</body>"))
    dom = chromium("--virtual-time-budget=10000", "--dump-dom", probe.as_uri(), tmp=tmp_path).stdout
    assert 'data-images="4/4"' in dom
    screenshot = tmp_path / "report.png"
    chromium(f"--screenshot={screenshot}", "--window-size=1280,1800", (directory / "index.html").as_uri(),
             tmp=tmp_path)
    pixels = np.asarray(Image.open(screenshot).convert("RGB"))
    assert pixels.shape[:2] == (1800, 1280)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 500  # text, bars and drawn images, not a blank page
    print(f"report screenshot: {screenshot}")

"""Headless Chromium renders the HTML report with every image loaded."""

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.integration

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


PROBE = """<script>window.addEventListener("load", () => {
  const images = [...document.images];
  const loaded = images.filter(img => img.complete && img.naturalWidth > 0).length;
  document.body.dataset.images = loaded + "/" + images.length;
});</script>"""


def chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("CI needs chromium (.ci/run installs Debian's package)")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp / 'chromium-profile'}"]
    return subprocess.run([CHROMIUM, *flags, *args], capture_output=True, text=True, timeout=120, check=True)


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
    # text, bars and drawn images, not a blank page (a few colours): 447 to 780 colours were seen, depending on
    # which images the gallery samples (by the hash of their image ids, which hold the test's temporary path)
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 300
    print(f"report screenshot: {screenshot}")

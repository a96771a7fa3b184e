"""The exports stream: peak memory of a 40,000-row export against a 500-row one, each in its own process."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


MEMORY_SCRIPT = """
import re, sys
from pipelines.review.export import export
from pipelines.review.export.source import RowFilter
export(sys.argv[1], sys.argv[2], sys.argv[3], RowFilter(), batch_size=500)
print(int(re.search(r"VmHWM:\\s+(\\d+) kB", open("/proc/self/status").read()).group(1)) // 1024)
"""


def peak_rss_mib(fmt: str, dataset, output) -> int:
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT, fmt, str(dataset), str(output)],
                            capture_output=True, text=True, check=True, cwd=REPO)
    return int(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("fmt", ["labelstudio", "coco"])
def test_exports_stream_memory_does_not_grow_with_the_rows(tmp_path, fmt):
    from tests.labelled_many import write_many_rows

    small = write_many_rows(tmp_path / "small", rows=500)
    large, in_memory_mib = write_many_rows(tmp_path / "large", rows=40_000, report_size=True)
    small_peak = peak_rss_mib(fmt, small, tmp_path / "small.json")
    large_peak = peak_rss_mib(fmt, large, tmp_path / "large.json")
    print(f"{fmt}: peak RSS {small_peak} MiB for 500 rows, {large_peak} MiB for 40,000 rows "
          f"({in_memory_mib} MiB as an Arrow table)")
    # Holding the rows would take hundreds of MiB (the export's own dicts for 40,000 rows alone are
    # over 100 MiB); streaming keeps the growth to about one batch and one row group.
    assert in_memory_mib > 300
    assert large_peak - small_peak < 64
    if fmt == "labelstudio":
        assert len(json.loads((tmp_path / "large.json").read_text())) == 40_000

"""The repository's paths, its job scripts loaded as modules (they live in jobs/, not in a package), and
what tests that run a job as a process watch it with."""

import importlib.util
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SAMPLES = DATA / "samples"


def load_job(name: str = "annotate") -> ModuleType:
    """`jobs/<name>.py` as a module, so a test calls its `main(argv)` in this process."""
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def written_files(output: Path) -> list[Path]:
    """The job's Parquet files that are whole (a file being written has no footer yet)."""
    whole = []
    for path in output.glob("task=*/*.parquet"):
        try:
            pq.read_metadata(path)
        except Exception:  # noqa: BLE001 - still being written
            continue
        whole.append(path)
    return whole


def wait_until(condition, proc: subprocess.Popen, log: Path, timeout_s: float = 180):
    """`condition()`'s first true value, checked every 0.1 s while the job `proc` (its output in `log`) runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if (found := condition()):
            return found
        assert proc.poll() is None, f"the job ended (exit {proc.returncode}) first:\n" + log.read_text()[-3000:]
        time.sleep(0.1)
    raise AssertionError("timed out:\n" + log.read_text()[-3000:])

"""The repository's paths, and its job scripts loaded as modules (they live in jobs/, not in a package)."""

import importlib.util
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "tests" / "data"
SAMPLES = DATA / "samples"


def load_job(name: str = "annotate") -> ModuleType:
    """`jobs/<name>.py` as a module, so a test calls its `main(argv)` in this process."""
    spec = importlib.util.spec_from_file_location(f"{name}_job", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

"""The package's declared Python is the one the README states and the one the tests run on."""

import re
import sys
import tomllib

from tests.jobs import REPO


def test_the_python_floor_is_stated_once_and_true_here():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    floor = re.fullmatch(r">=(\d+)\.(\d+)", project["requires-python"])
    assert floor, project["requires-python"]
    major, minor = int(floor.group(1)), int(floor.group(2))
    assert f"Python {major}.{minor}+" in (REPO / "README.md").read_text()
    assert sys.version_info[:2] >= (major, minor)


def test_the_packages_include_every_pipelines_subpackage():
    init_files = sorted(p.parent.relative_to(REPO).as_posix() for p in (REPO / "pipelines").rglob("__init__.py"))
    assert "pipelines/stages" in init_files and "pipelines/review/export" in init_files
    for folder in (REPO / "pipelines").rglob("*.py"):
        assert (folder.parent / "__init__.py").exists(), f"{folder.parent} is not a package: setuptools would skip it"

"""The README stays true: CI runs its test command, and it documents every flag and column."""

from pathlib import Path

from schemas import LABEL_ROW_SCHEMA
from schemas.job import JobConfig

REPO = Path(__file__).resolve().parents[2]
README = (REPO / "README.md").read_text()


def test_ci_runs_the_readme_test_command_verbatim():
    command = (REPO / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert command.endswith("-m pytest")
    assert command in README


def test_every_flag_is_in_the_usage():
    for name in JobConfig.model_fields:
        assert f"--{name.replace('_', '-')}" in README


def test_every_output_column_is_documented():
    for name in LABEL_ROW_SCHEMA.names:
        assert f"`{name}`" in README

"""pipelines/cli.py: flags derived from pydantic models print their help, whatever the texts hold."""

import pytest
from pydantic import BaseModel, Field

from pipelines.cli import parser_for
from schemas.benchmark import BenchmarkConfig
from schemas.job import JobConfig


class Percentages(BaseModel):
    share: float = Field(default=0.2, description="kept within 20% of the first run")
    strict: bool = Field(default=False, description="fail at 100% instead")


@pytest.mark.parametrize("model", [Percentages, JobConfig, BenchmarkConfig])
def test_help_prints_every_description(model):
    text = parser_for(model, "test").format_help()  # argparse %-formats help: a bare "%" raised here
    for field in model.model_fields.values():
        assert " ".join(field.description.split()[:3]) in " ".join(text.split())


def test_percent_signs_reach_the_help_as_written():
    text = " ".join(parser_for(Percentages, "test").format_help().split())
    assert "kept within 20% of the first run (default: 0.2)" in text
    assert "fail at 100% instead" in text

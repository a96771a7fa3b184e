"""pipelines/driver/cli.py: flags derived from pydantic models print their help, whatever the texts hold."""

import json

import pytest
from pydantic import BaseModel, Field

from pipelines.driver.cli import parser_for
from schemas.benchmark import BenchmarkConfig
from schemas.job import JobConfig
from tests.jobs import SAMPLES


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


class Switches(BaseModel):
    strict: bool = Field(default=False, description="off unless given")
    resume: bool = Field(default=True, description="on unless turned off")


def test_a_switch_that_is_on_by_default_can_be_turned_off():
    parser = parser_for(Switches, "test")
    assert vars(parser.parse_args([])) == {"strict": None, "resume": None}  # None: the model's default
    assert parser.parse_args(["--no-resume"]).resume is False
    assert parser.parse_args(["--resume", "--strict"]).resume is True
    with pytest.raises(SystemExit):
        parser.parse_args(["--no-strict"])  # a switch that is off by default has no --no- form


def test_no_resume_refuses_an_unfinished_run_instead_of_continuing_it(tmp_path, tiny_model_dir):
    from pipelines.run import job_identity, run_job

    argv = ["--input", str(SAMPLES), "--output", str(tmp_path / "out"), "--tasks", "caption", "--model",
            tiny_model_dir]
    flags = {k: v for k, v in vars(parser_for(JobConfig, "t").parse_args(argv)).items() if v is not None}
    (tmp_path / "out").mkdir()  # an unfinished run of these very arguments
    (tmp_path / "out" / "_job.json").write_text(json.dumps({**job_identity(JobConfig(**flags)), "run_id": "r"}))
    summary = run_job({**flags, "resume": False})
    assert summary["status"] == "refused" and "already exists; pass --overwrite" in summary["error"]

"""The job's stage chain: its contracts hold end to end, and a broken chain fails before any data moves."""

import pytest

from pipelines.build import ACTOR_TASK_RETRIES, compose, stages_for
from pipelines.placement import ModelPlacement
from pipelines.stages import read, write
from pipelines.stages.contract import StageContractError, check_chain
from pipelines.stages.generate import StageOptions
from schemas import LABEL_ROW_SCHEMA
from schemas.job import JobConfig

CFG = JobConfig(input="in/", output="out/", model="m", tasks="detect,caption", classes="car")
PLACEMENT = ModelPlacement("cpu", 1, 1, gpus_per_actor=0, cpus_per_actor=1, batch_size=6, torch_threads=2)


def job_stages():
    return stages_for(CFG, 224, 3, PLACEMENT, "run-1", None, StageOptions(), shared_finished=["finished"])


def test_the_stages_follow_the_data_flow_and_end_in_the_output_columns():
    stages = job_stages()
    assert [stage.contract.name for stage in stages] == ["resume", "decode", "generate", "label"]
    contracts = [stage.contract for stage in stages]
    assert check_chain(read.OUTPUT_COLUMNS, contracts) == tuple(LABEL_ROW_SCHEMA.names)
    check_chain(read.OUTPUT_COLUMNS, [*contracts, write.CONTRACT])


def test_the_model_stage_is_an_actor_pool_with_the_placement_and_restarts():
    generate = job_stages()[2]
    assert generate.options["num_gpus"] == 0 and generate.options["num_cpus"] == 1
    assert generate.options["max_restarts"] == -1 and generate.options["max_task_retries"] == ACTOR_TASK_RETRIES
    assert generate.options["fn_constructor_kwargs"]["stage_options"].torch_threads == 2
    # the placement's batch size (--batch-size or the device's default), in Ray's batches and the engine's
    assert generate.options["batch_size"] == generate.options["fn_constructor_kwargs"]["batch_size"] == 6
    assert (generate.options["compute"].min_size, generate.options["compute"].max_size) == (1, 1)


def test_a_gpu_pool_grows_between_its_bounds():
    cuda = ModelPlacement("cuda", 1, 4, gpus_per_actor=1, cpus_per_actor=1, batch_size=128)
    generate = stages_for(CFG, 224, 3, cuda, "run", None, StageOptions(), [None])[2]
    assert generate.options["num_gpus"] == 1
    assert (generate.options["compute"].min_size, generate.options["compute"].max_size) == (1, 4)
    assert generate.options["fn_constructor_kwargs"]["device"] == "cuda"


def test_a_chain_without_resume_fails_at_compose_naming_the_stage_and_column():
    without_resume = [stage for stage in job_stages() if stage.contract.name != "resume"]
    with pytest.raises(StageContractError, match="stage 'generate' reads column 'done_tasks', which no earlier "
                                                 "stage writes"):
        compose(None, without_resume)  # fails before it touches the source dataset

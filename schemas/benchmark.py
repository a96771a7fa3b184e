"""Configuration of one throughput benchmark (jobs/benchmark.py). Each field is documented once, here."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

BenchmarkModel = Literal["cpu-mid", "paligemma2-3b", "tiny"]
Engine = Literal["transformers", "vllm"]


class BenchmarkConfig(BaseModel):
    """Everything `jobs/benchmark.py` accepts."""

    model_config = ConfigDict(extra="forbid")

    output: str = Field(description="JSON file for the results; the plot is written beside it (.png).")
    model: BenchmarkModel = Field(
        default="cpu-mid", description="Random-weight architecture: cpu-mid (61M parameters), paligemma2-3b "
        "(the real PaliGemma 2 3B shapes, for a GPU) or tiny (plumbing tests).")
    image_size: int = Field(default=224, ge=32, description="Model input resolution in pixels.")
    images: int = Field(default=16, ge=1, description="Images labelled by each of the three ways.")
    tasks: list[str] = Field(default=["detect", "caption"], description="Comma-separated tasks.")
    classes: list[str] = Field(default=["car"], description="Comma-separated classes for detect.")
    batch_size: int = Field(default=16, ge=1, description="Pipeline batch size (requests per generate call).")
    sweep: list[int] = Field(default=[4, 8, 16], description="Comma-separated batch sizes for the model-only "
                             "ceiling; the best of them is the ceiling.")
    num_actors: int | None = Field(default=None, ge=1, description="Pipeline model actors (default as the job's).")
    torch_threads: int | None = Field(default=None, ge=1, description="Pipeline: torch threads per CPU actor "
                                      "(default as the job's: the node's CPUs over the actors).")
    share_vision: Literal["on", "off"] = Field(default="on", description="Pipeline: encode each image once for "
                                               "all its tasks (on), or once per task like the naive loop (off).")
    device: Literal["cpu", "cuda"] = Field(default="cpu", description="Where naive and ceiling run; the "
                                           "pipeline's actors take a GPU when the cluster has one.")
    peak_tflops: float | None = Field(default=None, gt=0, description="Accelerator's peak dense TFLOP/s in the "
                                      "model's dtype (H100 SXM bf16: 989), for the roofline fraction.")
    workdir: str | None = Field(default=None, description="Where the checkpoint, images and pipeline output go "
                                "(default: a temporary directory, removed at the end).")
    engine: list[Engine] | None = Field(
        default=None, description="Instead: compare these model-stage engines (comma-separated, e.g. "
        "transformers,vllm; vllm must be importable) on two cases, --model with forced answer lengths and the shapes "
        "checkpoint with its own answers, each as a model-only loop and through the pipeline "
        "(pipelines/devtools/engine_bench.py).")
    memory_check: bool = Field(default=False, description="Instead: driver peak RSS of the pipeline for 1k and "
                               "10k images (tiny model, one task), the second within 20% of the first.")
    budget_check: bool = Field(default=False, description="Instead: what a long token budget costs, for answers "
                               "that end by themselves (the shapes checkpoint) and for answers that never do "
                               "(random weights): seconds and decoding steps per budget.")
    resume_check: bool = Field(default=False, description="Instead: peak RSS of the driver and of a worker, and "
                               "the resume check's seconds, when resuming an output of 10,000 and of 1,000,000 "
                               "finished rows (written synthetically), by input file and with every id.")
    feeding_check: bool = Field(default=False, description="Instead: decode + resize CPU time at 12, 3 and 0.3 MP "
                                "(full against the JPEG draft), and the pipeline without its model against a plain "
                                "decode loop, in images per CPU-second, with the cores a GPU needs fed "
                                "(--images sets the 0.3 MP PNG count; a quarter as many 12 MP JPEGs).")

    @field_validator("tasks", "classes", "sweep", "engine", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

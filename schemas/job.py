"""Configuration of one annotation run. Each field is documented once, here; the CLI reuses these texts."""

from __future__ import annotations

import datetime
import re
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DEFAULT_MODEL = "google/paligemma2-3b-mix-448"
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's own decompression-bomb guard: about 0.25 GiB of RGB
# A partition key starts with a letter (a leading "_" or "." would hide it from Parquet readers) and is
# not a row column; a value is one plain path segment (dates, ids).
PARTITION_PATTERN = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)=([A-Za-z0-9][A-Za-z0-9._-]*)$")


def _split(value: object, sep: str) -> object:
    """Accept 'a,b' from a command line as well as a list from Python."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(sep) if part.strip()]
    return value


class PromptOptions(BaseModel):
    """What the task registry needs to build prompts and parse answers."""

    model_config = ConfigDict(frozen=True)

    classes: tuple[str, ...] = ()
    lang: str = "en"
    caption_style: Literal["caption", "cap", "describe"] = "caption"
    questions: tuple[str, ...] = ()
    answers: tuple[str, ...] = ()
    per_image_questions: bool = False
    max_new_tokens: tuple[tuple[str, int], ...] = ()  # (task, budget) pairs from --max-new-tokens


class VllmSettings(BaseModel):
    """The vLLM engine's settings that matter on a GPU; None takes the engine's default
    (pipelines/model/vllm_engine.py)."""

    model_config = ConfigDict(frozen=True)

    max_num_seqs: int = 256
    gpu_memory_utilization: float | None = None
    max_model_len: int | None = None


Quantization = Literal["none", "8bit", "4bit"]  # --quantization (pipelines.model.quantization)
VLLM_FIELDS = ("max_num_seqs", "gpu_memory_utilization", "max_model_len")


# --batch-size when not given. On CPU, 16 (docs/performance.md). On a GPU, eager decoding at small batches is
# bound by per-step overheads: PaliGemma 2 3B on one H200 at 224 px ran 4.5 images/s at 16 and 31.8 at 128.
# A batch of 128 images at 224 px (32,768 image tokens) peaked at 11.9 GiB, 32 at 448 px (as many image
# tokens) at 13.2 GiB, weights included: within a 24 GB GPU.
CPU_BATCH_SIZE = 16
GPU_BATCH_AT_224_PX = 128


def default_batch_size(device: str, image_size: int) -> int:
    """Images per model batch when --batch-size is not given: 16 on CPU; on a GPU as many as hold as many
    image tokens as 128 images at 224 px (32 at 448 px, 8 at 896), at most 128."""
    if device != "cuda":
        return CPU_BATCH_SIZE
    return max(1, min(GPU_BATCH_AT_224_PX, GPU_BATCH_AT_224_PX * 224 * 224 // (image_size * image_size)))


class JobConfig(BaseModel):
    """Everything `jobs/annotate.py` accepts."""

    model_config = ConfigDict(extra="forbid")

    input: str | None = Field(default=None, description="Images to annotate: a directory, glob, file, .tar shard(s) "
                              "or Parquet, local or gs:// / s3://. Give this or --input-manifest.")
    input_manifest: str | None = Field(
        default=None, description="A .parquet or .csv listing exactly the files to annotate (image files, .tar shards "
        "or Parquet), one URI per row in --manifest-column; instead of --input.")
    manifest_column: str = Field(default="uri", description="Column of --input-manifest holding the URIs.")
    since: datetime.datetime | None = Field(
        default=None, description="Only files under --input modified at or after this time (ISO 8601; UTC unless "
        "it says otherwise), for incremental runs.")
    until: datetime.datetime | None = Field(
        default=None, description="Only files under --input modified before this time (ISO 8601; UTC unless it "
        "says otherwise); with --since it makes a run's window exact.")
    output: str = Field(description="Directory of the output Parquet dataset (hive-partitioned by task).")
    tasks: list[str] = Field(description="Comma-separated tasks: caption, detect, segment, ocr, answer, question.")
    classes: list[str] = Field(default_factory=list, description="Comma-separated class names for detect and segment.")
    model: str = Field(default=DEFAULT_MODEL, description="Hugging Face model id or local directory.")
    revision: str | None = Field(default=None, description="Hub revision (branch, tag or commit) to pin.")
    vae: str | None = Field(default=None, description="PaliGemma's VQ-VAE mask decoder (big_vision's vae-oid.npz), "
                            "local or gs:// / s3://, for segment; default: vae-oid.npz in a local --model directory.")
    lang: str = Field(default="en", description="Language code for caption, answer and question prompts.")
    caption_style: Literal["caption", "cap", "describe"] = Field(
        default="caption", description="caption (short), cap (raw short) or describe (long).")
    questions: list[str] = Field(default_factory=list,
                                 description="'|'-separated questions asked of every image (answer task).")
    answers: list[str] = Field(default_factory=list,
                               description="'|'-separated answers to generate questions for (question task).")
    max_new_tokens: dict[str, int] = Field(
        default_factory=dict, description="Comma-separated TASK=N: the most new tokens one request of TASK may "
        "generate, instead of the task's default (--plan lists them); an answer cut there has finish_reason "
        "'length'.")
    input_format: Literal["auto", "images", "webdataset", "parquet"] = Field(
        default="auto", description="Input kind; auto picks by file extension.")
    image_column: str = Field(default="image", description="Parquet column holding encoded image bytes.")
    id_column: str | None = Field(default=None, description="Parquet column with a stable image id.")
    uri_column: str | None = Field(default=None, description="Parquet column with the image's source URI.")
    question_column: str | None = Field(default=None,
                                        description="Parquet column with a per-image question (answer task).")
    max_image_pixels: int = Field(
        default=DEFAULT_MAX_IMAGE_PIXELS, ge=1, description="Images with more pixels (width x height, read from "
        "the header before decoding) become image_error rows: a guard against decompression bombs.")
    jpeg_draft: bool = Field(
        default=True, description="On by default: a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) that "
        "leaves both sides at least twice the model's resolution, then resized, several times faster for camera "
        "photos; --no-jpeg-draft decodes every image whole.")
    dtype: Literal["auto", "bfloat16", "float32"] = Field(
        default="auto", description="The model's weights and activations: auto is bfloat16 on a GPU and float32 "
        "on CPU.")
    quantization: Quantization = Field(
        default="none", description="The language model's linear layers in 8-bit (LLM.int8) or 4-bit (NF4, computed "
        "in --dtype) with bitsandbytes, quantized as the model loads; a checkpoint saved quantized (jobs/quantize.py) "
        "needs the quantization it was saved with. --engine transformers only.")
    engine: Literal["transformers", "vllm"] = Field(
        default="transformers", description="The model stage's engine. transformers: generate in static batches of "
        "one task each; vllm: one vLLM engine per model actor, given each batch's requests at once (continuous "
        "batching, paged KV cache); needs pip install -e '.[vllm]'.")
    max_num_seqs: int | None = Field(
        default=None, ge=1, description="--engine vllm: the most sequences vLLM decodes at once (default 256).")
    gpu_memory_utilization: float | None = Field(
        default=None, gt=0, le=1, description="--engine vllm: the fraction of a GPU's memory the engine may take for "
        "weights, activations and KV cache (default 0.9); on a CPU actor, the fraction of the node's RAM its process "
        "may hold in all (default: none, and the KV cache alone gets 0.15 of the RAM).")
    max_model_len: int | None = Field(
        default=None, ge=1, description="--engine vllm: the longest sequence, image tokens + prompt + answer "
        "(default: the model's image tokens + 258 + the largest token budget of the job's tasks); a request longer "
        "than this becomes a model_error row.")
    batch_size: int | None = Field(
        default=None, ge=1, description="Images per model batch: with --engine transformers, requests per generate "
        "call; with vllm, the batch's requests are given to the engine together (default: 16 on CPU; on a GPU 128 "
        "at 224 px, 32 at 448, 8 at 896: about 32,768 image tokens, which PaliGemma 2 3B's model stage holds in "
        "13 GiB).")
    images_per_block: int = Field(
        default=64, ge=1, description="Image files per Ray Data block, the unit read, annotated and written together: "
        "a killed run loses at most the blocks in flight, and its rerun resumes after the others. (.tar shards and "
        "Parquet files are split by Ray as it sees fit.)")
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="Where the model runs. cuda: every model actor asks Ray for one GPU, and the "
        "job waits (up to --gpu-wait-timeout) for GPU nodes to join, as an autoscaling cluster adds them; cpu: CPU "
        "actors; auto: cuda when the cluster has GPUs now or its autoscaler reports node types with GPUs, else cpu.")
    gpu_wait_timeout: float = Field(
        default=1800.0, gt=0, description="Seconds the job waits while the cluster has no GPU for its model actors "
        "(at the start, or after losing every GPU node) before it fails (exit 1).")
    num_actors: int | None = Field(default=None, ge=1,
                                   description="Model actors, a fixed pool; default: see --min-actors and "
                                   "--max-actors (on CPU: 1).")
    min_actors: int | None = Field(
        default=None, ge=1, description="GPU: the fewest model actors the pool keeps (default 1); it grows while "
        "work is queued, asking the autoscaler for GPU nodes, and shrinks when they idle.")
    max_actors: int | None = Field(
        default=None, ge=1, description="GPU: the most model actors (one GPU each); default the cluster's GPUs, or "
        "more when the autoscaler reports it can start more.")
    run_id: str | None = Field(default=None, description="Id stamped on every row; default a UTC timestamp.")
    address: str | None = Field(default=None,
                                description="Ray cluster address; default RAY_ADDRESS, else a local Ray.")
    overwrite: bool = Field(default=False, description="Replace an existing output dataset (all of it).")
    resume: bool = Field(default=True, description="On by default: an unfinished run of the same arguments in "
                         "--output is continued (work already written is kept, not redone) and a finished one is "
                         "left as it is. --no-resume refuses any existing output instead; --overwrite starts again.")
    partition: str | None = Field(
        default=None, description="key=value (e.g. run_date=2026-11-22): write into this partition of --output, "
        "replacing only it if it exists; other partitions are kept.")
    replace_worse: bool = Field(
        default=False, description="With --partition: replace the partition even when the new rows are clearly "
        "worse (for some task, fewer than half the old partition's ok rows). Without it such a run keeps the old "
        "partition, leaves the new rows in --output/_staging/ and fails (exit 1); rerunning the same command with "
        "--replace-worse then swaps them in without generating them again.")
    summary_uri: str | None = Field(
        default=None, description="Also write the run's JSON summary here, in every case (done, refused or "
        "failed), for a scheduler to read.")
    plan: bool = Field(default=False, description="List what the run would do (images, shards, requests, "
                       "GPU-hours) and stop; loads no model and starts no Ray.")
    requests_per_gpu_s: float | None = Field(
        default=None, gt=0, description="Measured model requests (image x prompt) per second per GPU, for "
        "--plan's GPU-hours estimate; a GPU run's summary reports it.")

    @field_validator("tasks", "classes", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        return _split(value, ",")

    @field_validator("questions", "answers", mode="before")
    @classmethod
    def _pipe_list(cls, value: object) -> object:
        return _split(value, "|")

    @field_validator("tasks")
    @classmethod
    def _some_task(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("give at least one task")
        if len(set(value)) != len(value):
            raise ValueError(f"a task is listed twice: {value}")
        return value

    @field_validator("max_new_tokens", mode="before")
    @classmethod
    def _task_budgets(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        budgets = {}
        for pair in _split(value, ","):
            task, sep, count = pair.partition("=")
            if not sep or not count.strip().isdigit() or int(count) < 1:
                raise ValueError(f"{pair!r} is not TASK=N with N a positive whole number of tokens")
            budgets[task.strip()] = int(count)
        return budgets

    @field_validator("since", "until")
    @classmethod
    def _utc(cls, value: datetime.datetime | None) -> datetime.datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=datetime.timezone.utc)
        return value

    @field_validator("partition")
    @classmethod
    def _key_value(cls, value: str | None) -> str | None:
        if value is None:
            return value
        match = PARTITION_PATTERN.match(value)
        if not match:
            raise ValueError(f"{value!r} is not key=value (a key of letters, digits and _, starting with a letter; "
                             "a value of letters, digits, '.', '_' and '-')")
        if match.group(1) == "task":
            raise ValueError("'task' is already the dataset's inner partition; choose another key")
        return value

    @model_validator(mode="after")
    def _one_input(self) -> JobConfig:
        if (self.input is None) == (self.input_manifest is None):
            raise ValueError("give exactly one of --input and --input-manifest")
        if self.input_manifest is not None and (self.since or self.until):
            raise ValueError("--since and --until filter the listing of --input; a manifest already lists what "
                             "to annotate")
        if self.since and self.until and self.since >= self.until:
            raise ValueError(f"--since {self.since.isoformat()} is not before --until {self.until.isoformat()}")
        if self.replace_worse and not self.partition:
            raise ValueError("--replace-worse decides whether a --partition is replaced; give it with --partition")
        if self.num_actors is not None and (self.min_actors is not None or self.max_actors is not None):
            raise ValueError("--num-actors fixes the pool's size; give it, or --min-actors/--max-actors, not both")
        if self.min_actors and self.max_actors and self.min_actors > self.max_actors:
            raise ValueError(f"--min-actors {self.min_actors} is more than --max-actors {self.max_actors}")
        if self.engine == "vllm" and self.quantization != "none":
            raise ValueError("--quantization is for --engine transformers: the vLLM engine's bitsandbytes path is not "
                             "built or tested here (it would quantize in vLLM's own loader); use --engine transformers")
        if self.engine != "vllm":
            given = [field for field in VLLM_FIELDS if getattr(self, field) is not None]
            if given:
                raise ValueError(f"--{given[0].replace('_', '-')} sets the vLLM engine; give it with --engine vllm")
        if self.partition and self.overwrite:
            raise ValueError("--partition replaces only its own partition; --overwrite would replace the whole "
                             "dataset, so give one or the other")
        return self

    # Flags that change how a run goes, not what it writes: a run may be resumed with other values.
    OPERATIONAL_FIELDS: ClassVar[frozenset[str]] = frozenset({
        "run_id", "batch_size", "images_per_block", "num_actors", "min_actors", "max_actors", "device",
        "gpu_wait_timeout", "address", "overwrite", "resume", "summary_uri",
        "plan", "requests_per_gpu_s", "replace_worse", *VLLM_FIELDS})

    def batch_size_for(self, device: str, image_size: int) -> int:
        """--batch-size, or its default for `device` ("cuda" or "cpu") and the model's input size."""
        return self.batch_size or default_batch_size(device, image_size)

    def identity(self) -> dict:
        """The arguments that decide the output rows, as JSON data: a run is resumed only by a job with
        the same identity. A new field counts unless listed in OPERATIONAL_FIELDS."""
        return self.model_dump(mode="json", exclude=set(self.OPERATIONAL_FIELDS))

    @property
    def partition_key_value(self) -> tuple[str, str] | None:
        """(key, value) of --partition, or None."""
        return tuple(self.partition.split("=", 1)) if self.partition else None

    def vllm_settings(self) -> VllmSettings:
        """The vLLM flags given; the others take the engine's defaults."""
        given = {field: getattr(self, field) for field in VLLM_FIELDS}
        return VllmSettings(**{field: value for field, value in given.items() if value is not None})

    def prompt_options(self) -> PromptOptions:
        return PromptOptions(
            classes=tuple(self.classes),
            lang=self.lang,
            caption_style=self.caption_style,
            questions=tuple(self.questions),
            answers=tuple(self.answers),
            per_image_questions=self.question_column is not None,
            max_new_tokens=tuple(sorted(self.max_new_tokens.items())),
        )

    @property
    def model_name(self) -> str:
        """The model as recorded in every row."""
        return f"{self.model}@{self.revision}" if self.revision else self.model

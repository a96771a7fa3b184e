"""Configuration of one annotation run. Each field is documented once, here; the CLI reuses these texts."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

DEFAULT_MODEL = "google/paligemma2-3b-mix-448"


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


class JobConfig(BaseModel):
    """Everything `jobs/annotate.py` accepts."""

    model_config = ConfigDict(extra="forbid")

    input: str = Field(description="Images to annotate: a directory, glob, file, .tar shard(s) or Parquet, "
                       "local or gs:// / s3://.")
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
    input_format: Literal["auto", "images", "webdataset", "parquet"] = Field(
        default="auto", description="Input kind; auto picks by file extension.")
    image_column: str = Field(default="image", description="Parquet column holding encoded image bytes.")
    id_column: str | None = Field(default=None, description="Parquet column with a stable image id.")
    uri_column: str | None = Field(default=None, description="Parquet column with the image's source URI.")
    question_column: str | None = Field(default=None,
                                        description="Parquet column with a per-image question (answer task).")
    batch_size: int = Field(default=8, ge=1, description="Requests per generate call (images per model batch).")
    num_actors: int | None = Field(default=None, ge=1,
                                   description="Model actors; default one per GPU, or 1 on a CPU-only cluster.")
    run_id: str | None = Field(default=None, description="Id stamped on every row; default a UTC timestamp.")
    address: str | None = Field(default=None,
                                description="Ray cluster address; default RAY_ADDRESS, else a local Ray.")
    overwrite: bool = Field(default=False, description="Replace an existing output dataset.")

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

    def prompt_options(self) -> PromptOptions:
        return PromptOptions(
            classes=tuple(self.classes),
            lang=self.lang,
            caption_style=self.caption_style,
            questions=tuple(self.questions),
            answers=tuple(self.answers),
            per_image_questions=self.question_column is not None,
        )

    @property
    def model_name(self) -> str:
        """The model as recorded in every row."""
        return f"{self.model}@{self.revision}" if self.revision else self.model

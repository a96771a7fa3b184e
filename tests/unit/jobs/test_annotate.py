"""jobs/annotate.py: flags come from JobConfig; bad input fails with one line before Ray starts."""


import pytest
import ray

from pipelines.devtools.tiny_model import save_tiny_paligemma
from pipelines.driver.cli import parser_for
from schemas.job import JobConfig
from tests.jobs import SAMPLES as SAMPLES_PATH
from tests.jobs import load_job

SAMPLES = str(SAMPLES_PATH)


def test_every_config_field_is_a_flag_with_its_description():
    parser = parser_for(JobConfig, "test")
    flags = {action.dest: action for action in parser._actions}
    for name, field in JobConfig.model_fields.items():
        assert field.description and field.description in flags[name].help


def test_list_flags_are_split():
    args = parser_for(JobConfig, "t").parse_args(
        ["--input", "i", "--output", "o", "--tasks", "detect, caption", "--classes", "car,traffic light",
         "--questions", "what is it?|how many, roughly?"])
    cfg = JobConfig.model_validate({k: v for k, v in vars(args).items() if v is not None})
    assert cfg.tasks == ["detect", "caption"]
    assert cfg.classes == ["car", "traffic light"]
    assert cfg.questions == ["what is it?", "how many, roughly?"]
    assert cfg.model == "google/paligemma2-3b-mix-448" and cfg.overwrite is False


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--tasks", "caption,segmentt"], "unknown task 'segmentt'; choose from"),
        (["--tasks", "detect"], "detect needs --classes"),
        (["--tasks", "answer"], "answer needs --questions or --question-column"),
        (["--tasks", "caption", "--input", "/no/such/dir"], "input not found: /no/such/dir"),
        (["--tasks", "caption", "--batch-size", "0"], "--batch-size: Input should be greater than or equal to 1"),
        (["--tasks", "caption", "--model", "./no/such/model"], "model directory './no/such/model' does not exist"),
        (["--tasks", "caption", "--model", "google/paligemma2-3b-mix-448"], "hf auth login"),
        (["--tasks", "caption,caption"], "a task is listed twice"),
        (["--tasks", "segment"], "segment needs --classes"),
        (["--tasks", "segment", "--classes", "car", "--vae", "/no/such/vae-oid.npz"],
         "cannot read the mask decoder file '/no/such/vae-oid.npz'"),
        (["--tasks", "segment", "--classes", "car", "--vae", SAMPLES + "/../README.md"], "not a mask decoder .npz"),
        # this environment has no vLLM (the vLLM environment is .vllm-venv)
        (["--tasks", "caption", "--engine", "vllm"], "--engine vllm needs vLLM in the job's environment: pip install "
         "-e '.[vllm]'"),
        (["--tasks", "caption", "--max-num-seqs", "8"],
         "--max-num-seqs sets the vLLM engine; give it with --engine vllm"),
        (["--tasks", "caption", "--quantization", "4bit", "--engine", "vllm"],
         "--quantization is for --engine transformers"),
    ],
)
def test_bad_flags_exit_2_with_one_line_before_ray_starts(extra, message, tmp_path, capsys, monkeypatch,
                                                          tiny_model_dir):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # a Hub id must fail fast, network or not
    monkeypatch.setattr(ray, "is_initialized", lambda: False)

    def no_ray(*args, **kwargs):
        raise AssertionError("Ray was started for a command that should have failed first")

    monkeypatch.setattr(ray, "init", no_ray)
    argv = ["--input", SAMPLES, "--output", str(tmp_path / "out"), "--model", tiny_model_dir]
    assert load_job().main(argv + extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err
    assert "\n" not in err
    assert not (tmp_path / "out").exists()


def test_existing_output_needs_overwrite(tmp_path, capsys, tiny_model_dir):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "part.parquet").write_bytes(b"x")
    argv = ["--input", SAMPLES, "--output", str(tmp_path / "out"), "--model", tiny_model_dir, "--tasks", "ocr"]
    assert load_job().main(argv) == 2
    assert "holds no run of this tool to resume (no _job.json); pass --overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "part.parquet").exists()


def test_segment_without_a_mask_decoder_stops_before_ray_and_says_where_to_get_one(tmp_path, capsys, monkeypatch):
    model_dir = save_tiny_paligemma(tmp_path / "model-without-vae", with_vae=False)
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    argv = ["--input", SAMPLES, "--output", str(tmp_path / "out"), "--model", str(model_dir)]
    assert load_job().main(argv + ["--tasks", "segment,detect", "--classes", "car"]) == 2
    err = capsys.readouterr().err
    assert "gs://big_vision/paligemma/vae-oid.npz" in err and "--vae" in err
    assert not (tmp_path / "out").exists()


def test_vllm_refuses_a_checkpoint_with_its_own_output_head_before_ray_starts(tmp_path, capsys, monkeypatch):
    from pipelines.devtools.tiny_model import save_tiny_paligemma
    from pipelines.model import checkpoint

    untied = save_tiny_paligemma(tmp_path / "untied", tie_word_embeddings=False)
    monkeypatch.setattr(checkpoint, "vllm_available", lambda: True)  # as in the vLLM environment
    monkeypatch.setattr(ray, "init", lambda *a, **k: (_ for _ in ()).throw(AssertionError("Ray was started")))
    argv = ["--input", SAMPLES, "--output", str(tmp_path / "out"), "--model", str(untied), "--tasks", "caption",
            "--engine", "vllm"]
    assert load_job().main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "has an output head of its own (tie_word_embeddings is false)" in err and "--engine transformers" in err


@pytest.mark.parametrize("flags", [[], ["--quantization", "4bit"]])
def test_a_checkpoint_saved_in_8bit_needs_quantization_8bit_before_ray_starts(flags, tmp_path, capsys, monkeypatch,
                                                                             tiny_model_dir):
    from pipelines.model.quantization import save_quantized

    saved = save_quantized(tiny_model_dir, None, "8bit", "auto", str(tmp_path / "tiny-8bit"))["output"]
    capsys.readouterr()  # the save's own progress output
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started"))
    argv = ["--input", SAMPLES, "--output", str(tmp_path / "out"), "--model", saved, "--tasks", "caption"]
    assert load_job().main(argv + flags) == 2
    err = capsys.readouterr().err.strip()
    assert "the checkpoint is stored quantized (8bit); give --quantization 8bit to load it" in err and "\n" not in err

"""`--engine vllm` against `--engine transformers`, in the vLLM environment that `.ci/run` builds
(`.vllm-venv`, docs/performance.md); skipped, saying why, where it is missing.

Both engines run `jobs/annotate.py` the way users run it, each job starting its own local Ray, on held-out
shapes scenes with the committed (tied) shapes checkpoint, in the same environment, so that only the
engine differs. The vLLM run's model actor is killed once it has written rows (Ray starts it, and its vLLM
engine, again, and retries its batches). Its rows must still be each (image, task, prompt) exactly once,
and carry the transformers engine's answers. (A rerun after a killed driver resumes from the files and
`_job.json`, whatever the engine: tests/integration/test_kills.py.)
"""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from pipelines.devtools.shapes import write_shapes
from pipelines.model.checkpoint import VAE_FILENAME
from pipelines.review.evaluate import evaluate_rows
from pipelines.storage.output import read_annotations
from tests.conftest import SHAPES_MODEL
from tests.jobs import wait_until, written_files
from tests.rows import assert_each_once

REPO = Path(__file__).resolve().parents[2]
VLLM_PYTHON = REPO / ".vllm-venv" / "bin" / "python"
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not VLLM_PYTHON.exists(), reason="no vLLM environment at .vllm-venv (built by .ci/run; "
                       "docs/performance.md gives the command)"),
]

HELD_OUT_SEED = 1000  # as tests/integration/test_shapes_checkpoint.py: scenes the checkpoint never saw
IMAGES = 24
TASKS = "detect,segment,caption"
ROWS = IMAGES * 3
# Measured (docs/performance.md, "Equal answers"): 72 of 72 rows carried identical answers.
SAME_ANSWER_SHARE = 0.95


def run_job(engine: str, output: Path, inputs: Path, log: Path) -> subprocess.Popen:
    """`jobs/annotate.py` in the vLLM environment, with a local Ray of its own (--address local: never a
    cluster that another test started on this machine). Blocks of 2 images: a vLLM engine answers one in
    about a second, so a kill after the first file leaves most of the run to do."""
    cmd = [str(VLLM_PYTHON), str(REPO / "jobs" / "annotate.py"), "--input", str(inputs), "--output", str(output),
           "--model", str(SHAPES_MODEL), "--tasks", TASKS, "--classes", "circle,square,triangle", "--engine", engine,
           "--batch-size", "2", "--images-per-block", "2", "--address", "local"]
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO)


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (the job's local Ray: its raylet, and the workers the raylet starts)."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").iterdir():
        try:
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(ppid, []).append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def model_actor_pids(job: subprocess.Popen) -> list[int]:
    pids = []
    for pid in descendants(job.pid):
        try:
            if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::") \
                    and b"GenerateStage" in Path(f"/proc/{pid}/cmdline").read_bytes():
                pids.append(pid)
        except OSError:
            continue
    return pids


def kill_group(proc: subprocess.Popen) -> None:
    """The driver and the local Ray it started (its session), with no chance to clean up."""
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same job with each engine: (transformers rows, vLLM rows, vLLM summary, ground truth)."""
    root = tmp_path_factory.mktemp("engines")
    write_shapes(str(root / "shapes"), count=IMAGES, seed=HELD_OUT_SEED)
    inputs = root / "shapes" / "images"
    ground_truth = json.loads((root / "shapes" / "ground_truth.json").read_text())

    reference = run_job("transformers", root / "transformers", inputs, root / "transformers.log")
    assert reference.wait(timeout=600) == 0, (root / "transformers.log").read_text()[-4000:]

    output, log = root / "vllm", root / "vllm.log"
    job = run_job("vllm", output, inputs, log)
    try:
        # The model actor, once it has written a block: Ray starts it (and its engine) again and retries its batches.
        pids = wait_until(lambda: written_files(output) and model_actor_pids(job), job, log, timeout_s=600)
        os.kill(pids[0], signal.SIGKILL)
        assert job.wait(timeout=600) == 0, log.read_text()[-4000:]
    finally:
        if job.poll() is None:
            kill_group(job)
    summary = json.loads((output / "_summary.json").read_text())
    return (read_annotations(str(root / "transformers")).to_pylist(), read_annotations(str(output)).to_pylist(),
            summary, ground_truth)


def test_vllm_feeds_the_processors_prompt_ids_and_a_refused_request_fails_alone():
    """(Without Ray.) vLLM's prompt token ids equal the transformers processor's for every task, and a
    request vLLM refuses (longer than --max-model-len) is the only model_error row of its batch."""
    probe = subprocess.run([str(VLLM_PYTHON), str(REPO / "tests" / "integration" / "vllm_stage_probe.py"),
                            str(SHAPES_MODEL), str(SHAPES_MODEL / VAE_FILENAME)],
                           capture_output=True, text=True, cwd=REPO, timeout=600)
    assert probe.returncode == 0, probe.stdout[-3000:] + probe.stderr[-3000:]
    result = json.loads(probe.stdout.strip().splitlines()[-1])  # vLLM logs to stdout too; the JSON comes last
    tasks = {entry["prompt"].split()[0] for entry in result["prompt_ids"]}
    assert tasks == {"caption", "detect", "segment", "ocr", "answer", "question"}
    for entry in result["prompt_ids"]:
        assert entry["vllm"] == entry["transformers"], entry["prompt"]

    rows = result["rows"]
    keys = assert_each_once(rows, 3 * (1 + 1 + 1 + 1 + 1 + 1) + 2)  # + the answers to b's and c's own questions
    failed = [row for row in rows if row["status"] != "ok"]
    assert [(row["image_id"], row["task"], row["prompt"]) for row in failed] == [
        ("b", "answer", "answer en " + result["poison"])]
    assert failed[0]["error"].startswith("VLLMValidationError") and "maximum context length" in failed[0]["error"]
    assert failed[0]["raw_output"] == "" and failed[0]["finish_reason"] == ""
    assert len(keys) == len(rows)


def test_a_killed_vllm_actor_is_started_again_and_each_row_is_written_once(runs):
    _, rows, summary, _ = runs
    assert_each_once(rows, ROWS)
    assert summary["engine"] == "vllm" and summary["status"] == "succeeded" and summary["model_actor_starts"] >= 2
    assert len({row["run_id"] for row in rows}) == 1


def test_vllm_answers_equal_the_transformers_engines(runs):
    """Each row's answer, finish reason, status and scores, and the mAPs: vLLM computes transformers' function
    (pipelines.model.vllm_numerics). Without its bidirectional prompt on CPU, 24 of 72 rows were equal
    (the captions) and detect mAP@.5 fell from 0.902 to 0.487."""
    reference, rows, _, ground_truth = runs
    by_key = {(r["image_id"], r["task"], r["prompt"]): r for r in reference}
    same = [(by_key[(r["image_id"], r["task"], r["prompt"])], r) for r in rows
            if r["raw_output"] == by_key[(r["image_id"], r["task"], r["prompt"])]["raw_output"]]
    print(f"{len(same)} of {len(rows)} rows carry the identical answer")
    assert len(same) >= SAME_ANSWER_SHARE * len(rows)
    gaps = []
    for ours, theirs in same:
        assert (ours["finish_reason"], ours["status"]) == (theirs["finish_reason"], theirs["status"])
        for field in ("boxes", "masks"):
            gaps += [abs(a["score"] - b["score"]) for a, b in zip(ours[field] or [], theirs[field] or [], strict=True)]
        if ours["text_score"] is not None:
            gaps.append(abs(ours["text_score"] - theirs["text_score"]))
    print(f"{len(gaps)} scores, the largest {max(gaps):.6f} apart")
    assert max(gaps) <= 0.02
    expected, measured = evaluate_rows(reference, ground_truth), evaluate_rows(rows, ground_truth)
    print({key: (expected[key]["mAP_50"], measured[key]["mAP_50"])
           for key in ("detect", "segment_boxes", "segment_masks")})
    for key in ("detect", "segment_boxes", "segment_masks"):
        for metric in ("mAP", "mAP_50"):
            assert abs(measured[key][metric] - expected[key][metric]) <= 0.01, (key, metric)
    assert abs(measured["caption"]["exact_match"] - expected["caption"]["exact_match"]) <= 0.01

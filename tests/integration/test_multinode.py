"""The job on a real multi-node Ray cluster on this machine (Ray's own `ray.cluster_utils.Cluster`: a head
and worker nodes, each its own raylet and object store). Worker nodes declare one GPU as a logical
resource, so the model actors' `num_gpus=1` places them there, and torch runs on CPU inside them.

The job runs as users run it, `jobs/annotate.py --address` in its own process (its driver on the head),
and each test checks from outside where the model actors ran (the node ids Ray gave the nodes) and that
every (image, task, prompt) is exactly one row, whatever happened to the nodes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from ray.cluster_utils import Cluster

from tests.images import encode, solid
from tests.integration.conftest import read_output
from tests.jobs import REPO
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration

TASKS = "detect,caption"
# The tiny random model never ends an answer: without a cap each detect answer runs to its 376-token
# budget, which is most of a run's time here and tells nothing about nodes coming and going.
BUDGET = "detect=64"


def write_images(root: Path, count: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (root / f"{i:03d}.png").write_bytes(encode(solid(24 + i % 7, 20 + i % 5, (i * 5 % 255, 90, 200)), "PNG"))
    return root


@contextlib.contextmanager
def ray_cluster(**head):
    """A head node (2 CPUs, no GPU unless given) that the test adds worker nodes to; every process it
    started is killed at the end (never `ray stop`, which would kill other people's Ray too)."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "num_gpus": 0, **head})
    try:
        yield cluster
    finally:
        cluster.shutdown()


def add_gpu_node(cluster: Cluster):
    """A worker node with one (logical) GPU and the one CPU its model actor asks for."""
    return cluster.add_node(num_cpus=1, num_gpus=1)


def start_job(cluster: Cluster, images: Path | str, output: Path | str, model: str, *flags: str,
              summary: Path | None = None, budget: str | None = BUDGET) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "jobs" / "annotate.py"), "--address", cluster.address,
               "--input", str(images), "--output", str(output), "--model", model, "--tasks", TASKS,
               "--classes", "car", "--batch-size", "2", "--images-per-block", "2", "--device", "cuda",
               "--summary-uri", str(summary or f"{output}.summary.json"), *flags]
    if budget:
        command += ["--max-new-tokens", budget]
    # Its output goes to a file, not a pipe: the tests poll the job for minutes without reading, and a full
    # pipe would block it.
    log = tempfile.TemporaryFile("w+")
    job = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    job.log = log
    return job


def job_output(job: subprocess.Popen) -> str:
    job.log.seek(0)
    return job.log.read()


def finish(job: subprocess.Popen, output: Path, timeout: float = 300, exit_code: int = 0,
           summary: Path | None = None) -> tuple[dict, str]:
    """The job's summary (--summary-uri) and its output (stdout and stderr), once it has ended."""
    try:
        job.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        job.kill()
        job.wait()
        pytest.fail(f"the job had not ended after {timeout} s; its output ends with:\n{job_output(job)[-3000:]}")
    err = job_output(job)
    assert job.returncode == exit_code, err[-3000:]
    return json.loads(Path(summary or f"{output}.summary.json").read_text()), err


def written_files(output: Path) -> int:
    return sum(1 for _ in output.rglob("*.parquet"))


def wait_for_first_files(job: subprocess.Popen, output: Path, timeout: float = 120) -> None:
    """Until the model stage has written two files (its actors are up), the job ended, or the timeout."""
    deadline = time.monotonic() + timeout
    while written_files(output) < 2 and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)


def test_the_job_waits_for_a_gpu_node_and_runs_its_model_there(tmp_path, tiny_model_dir):
    """Test 1: the autoscaling case. The head has no GPU; a GPU node joins once the job says it is waiting."""
    images = write_images(tmp_path / "in", 8)
    with ray_cluster() as cluster:
        job = start_job(cluster, images, tmp_path / "out", tiny_model_dir)
        deadline = time.monotonic() + 120
        while "waiting for GPU nodes" not in job_output(job) and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(2)  # a moment longer: a job that ran its model on the head's CPUs would be writing rows now
        assert job.poll() is None and written_files(tmp_path / "out") == 0, job_output(job)
        node = add_gpu_node(cluster)
        summary, err = finish(job, tmp_path / "out")
    print(f"late GPU node {node.node_id}: model_nodes {summary['model_nodes']}, {summary['rows']} rows, "
          f"{err.count('waiting for GPU nodes')} wait line(s)")
    assert "waiting for GPU nodes: the cluster has no GPU for the model actors (--device cuda)" in err
    assert summary["device"] == "cuda" and summary["gpus_per_actor"] == 1
    assert summary["model_nodes"] == [node.node_id]  # reported by each actor, compared with Ray's id of the node
    assert summary["gpus_used"] == 1
    assert_each_once(read_output(str(tmp_path / "out")), count=8 * 2)


def test_without_a_gpu_node_the_job_gives_up_after_the_timeout(tmp_path, tiny_model_dir):
    images = write_images(tmp_path / "in", 2)
    with ray_cluster() as cluster:
        job = start_job(cluster, images, tmp_path / "out", tiny_model_dir, "--gpu-wait-timeout", "5")
        summary, err = finish(job, tmp_path / "out", timeout=120, exit_code=1)
    assert summary["status"] == "failed"
    assert summary["error"].startswith("GpuWaitTimeoutError: no GPU for the model actors for 5 s (--gpu-wait-timeout)")
    assert err.count("waiting for GPU nodes") == 1  # said once; the next line would come a minute later


def wait_for_more_files(job: subprocess.Popen, output: Path, more: int, timeout: float = 120) -> int:
    """Until `more` files more than now are written (or the job ended, or the timeout); the count then."""
    target, deadline = written_files(output) + more, time.monotonic() + timeout
    while written_files(output) < target and time.monotonic() < deadline and job.poll() is None:
        time.sleep(0.2)
    return written_files(output)


def test_gpu_nodes_killed_mid_run_lose_no_row(tmp_path, tiny_model_dir):
    """Test 2, a preemption storm in the model stage: the run itself completes (no rerun) with every row once.

    Two GPU nodes, an actor on each (a node killed: its raylet, object store and workers, SIGKILL). The first
    is killed once the model stage has written files, and not replaced at once: the run goes on on the other
    node alone, which must write files of its own. Then two nodes join and the other first node is killed;
    once the new nodes' actors write, one of them is killed and another node joins. Each step waits for files
    to be written, not for a fixed time, so every kill lands while actors work. The answers run to the full
    detect budget, so the run is still in its model stage at the last kill (a capped run here once ended
    before its actors were up). Three kills: runs that met 4 or 5 took up to 142 s in the whole suite."""
    images, output = write_images(tmp_path / "in", 72), tmp_path / "out"
    kills: list[tuple[float, int]] = []  # (seconds after the start, files written then)
    with ray_cluster() as cluster:
        first = [add_gpu_node(cluster), add_gpu_node(cluster)]
        started = time.monotonic()
        job = start_job(cluster, images, output, tiny_model_dir, "--num-actors", "2", budget=None)

        def kill(node) -> None:
            cluster.remove_node(node, allow_graceful=False)
            kills.append((round(time.monotonic() - started, 1), written_files(output)))

        # Ray's Cluster adds and removes nodes from the main thread only (signal handlers): the storm runs here.
        wait_for_first_files(job, output)
        kill(first[0])
        alone = wait_for_more_files(job, output, 2)  # the surviving node's actor goes on by itself
        joined = [add_gpu_node(cluster), add_gpu_node(cluster)]
        kill(first[1])
        wait_for_more_files(job, output, 2)  # the new nodes' actors are up and writing
        kill(joined[0])
        add_gpu_node(cluster)
        while job.poll() is None:
            time.sleep(0.2)
        ended = time.monotonic() - started
        summary, out = finish(job, output)
    print(f"storm: killed at (s, files) {kills}, {alone} files before nodes joined, run ended at {ended:.1f} s "
          f"with {written_files(output)} files, {summary['model_actor_starts']} actor starts on "
          f"{len(summary['model_nodes'])} nodes, {len(out)} characters of job output")
    assert kills[-1][1] < written_files(output), "the run had ended before the last kill"
    assert alone >= kills[0][1] + 2, "the run did not go on on the surviving node"
    assert summary["status"] == "succeeded"
    assert summary["model_actor_starts"] >= 3  # a killed node's actor was started again elsewhere
    assert {node.node_id for node in first} <= set(summary["model_nodes"])
    assert_each_once(read_output(str(output)), count=72 * 2)


def test_output_on_object_storage_written_from_several_nodes(tmp_path, gcs, tiny_model_dir):
    """Test 3: gs:// in and out (the GCS emulator), on a cluster whose head runs no task (0 CPUs): every
    read, decode, label and write task runs on the two worker nodes, which also hold a model actor each."""
    write_images(tmp_path / "in", 24)
    gcs.upload_tree(tmp_path / "in", "multinode", "raw")
    summary_path = tmp_path / "summary.json"
    with ray_cluster(num_cpus=0) as cluster:
        nodes = [cluster.add_node(num_cpus=2, num_gpus=1), cluster.add_node(num_cpus=2, num_gpus=1)]
        job = start_job(cluster, "gs://multinode/raw", "gs://multinode/labels", tiny_model_dir,
                        "--num-actors", "2", summary=summary_path)
        summary, _ = finish(job, tmp_path, summary=summary_path)
    print(f"gs:// output from nodes {[node.node_id for node in nodes]}: model_nodes {summary['model_nodes']}, "
          f"{summary['rows']} rows")
    assert set(summary["model_nodes"]) == {node.node_id for node in nodes}
    assert summary["summary_uri"] == "gs://multinode/labels/_summary.json"
    table = read_output("multinode/labels", filesystem=gcs.filesystem())
    assert_each_once(table, count=24 * 2)
    assert all(uri.startswith("gs://multinode/raw/") for uri in table.column("source_uri").to_pylist())


AUTOSCALER_REPORT = """
import sys, ray
from ray.core.generated import autoscaler_pb2
from ray.experimental.internal_kv import _internal_kv_put
from pipelines.placement import place_model
from schemas.job import JobConfig

ray.init(address=sys.argv[1])
cfg = JobConfig(input="in/", output="out/", tasks=["caption"])
before = place_model(cfg, 224)
# What Ray's v2 autoscaler records in the GCS: its node types, here a GPU type that may scale to 4 nodes.
config = autoscaler_pb2.ClusterConfig()
group = config.node_group_configs.add(name="gpu", min_count=0, max_count=4)
group.resources["CPU"], group.resources["GPU"] = 8, 1
_internal_kv_put(ray._raylet.GCS_AUTOSCALER_CLUSTER_CONFIG_KEY, config.SerializeToString(),
                 namespace=ray._raylet.GCS_AUTOSCALER_STATE_NAMESPACE)
after = place_model(cfg, 224)
print(before.device, before.max_actors, before.batch_size, after.device, after.min_actors, after.max_actors,
      after.batch_size)
"""


def test_auto_asks_for_gpus_when_the_autoscaler_reports_gpu_node_types(tmp_path):
    """`--device auto` on a cluster with no GPU node yet: CPU while nothing says GPU nodes can come, cuda (a
    pool of 1 to 4 actors, and the GPU's default batch) once the cluster's autoscaler record lists a GPU node
    type that scales to 4."""
    with ray_cluster() as cluster:
        result = subprocess.run([sys.executable, "-c", AUTOSCALER_REPORT, cluster.address], capture_output=True,
                                text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["cpu", "1", "16", "cuda", "1", "4", "128"]  # the batch follows the device

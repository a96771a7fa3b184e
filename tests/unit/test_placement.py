import signal
import time

import pytest

from pipelines.placement import (
    WAKE_SIGNAL,
    GpuWait,
    GpuWaitTimeoutError,
    ModelPlacement,
    choose_device,
    placement_summary,
    pool_size,
)
from schemas.job import JobConfig


def _cfg(**flags) -> JobConfig:
    return JobConfig(input="in/", output="out/", tasks=["caption"], **flags)


@pytest.mark.parametrize(("requested", "now", "possible", "device"), [
    ("auto", 0, 0, "cpu"),
    ("auto", 2, 0, "cuda"),
    ("auto", 0, 4, "cuda"),  # an autoscaler that can add GPU nodes: ask for them
    ("cuda", 0, 0, "cuda"),  # asked for: wait for GPU nodes rather than fall back to CPU
    ("cpu", 8, 8, "cpu"),
])
def test_choose_device(requested, now, possible, device):
    assert choose_device(requested, now, possible) == device


def test_the_gpu_pool_grows_to_what_the_cluster_can_have():
    assert pool_size(_cfg(), "cuda", gpus_now=0, gpus_possible=4) == (1, 4)
    assert pool_size(_cfg(), "cuda", gpus_now=2, gpus_possible=0) == (1, 2)
    assert pool_size(_cfg(), "cuda", gpus_now=0, gpus_possible=0) == (1, 1)
    assert pool_size(_cfg(min_actors=2, max_actors=6), "cuda", 1, 0) == (2, 6)
    assert pool_size(_cfg(min_actors=3), "cuda", 1, 0) == (3, 3)
    assert pool_size(_cfg(num_actors=5), "cuda", 8, 16) == (5, 5)


def test_a_cpu_pool_is_fixed():
    assert pool_size(_cfg(), "cpu", 0, 0) == (1, 1)
    assert pool_size(_cfg(num_actors=2), "cpu", 0, 0) == (2, 2)
    assert pool_size(_cfg(max_actors=3), "cpu", 0, 0) == (3, 3)


def test_num_actors_and_a_range_are_refused_together():
    with pytest.raises(ValueError, match="--num-actors fixes the pool"):
        _cfg(num_actors=2, max_actors=4)
    with pytest.raises(ValueError, match="more than --max-actors"):
        _cfg(min_actors=4, max_actors=2)


def test_device_and_pool_flags_do_not_change_the_jobs_identity():
    assert _cfg(device="cuda", max_actors=4, gpu_wait_timeout=60).identity() == _cfg().identity()


def test_the_wait_says_it_once_then_every_interval_and_stops_when_a_gpu_joins():
    lines, gpus = [], iter([0] * 25 + [1] * 1000)
    with GpuWait(timeout_s=60, report_every_s=0.1, poll_s=0.01, gpus=lambda: next(gpus), say=lines.append) as wait:
        time.sleep(0.5)
    assert 2 <= len(lines) <= 4, lines  # 25 polls of 10 ms without a GPU: the first line and one per 100 ms
    assert lines[0].startswith("waiting for GPU nodes: the cluster has no GPU for the model actors (--device cuda)")
    assert "giving up after 60 s (--gpu-wait-timeout)" in lines[0]
    assert not wait.timed_out
    wait.raise_if_timed_out()


def test_the_wait_ends_the_run_after_the_timeout():
    # As in a job started in the background, or after a library set it so: SIGINT ignored. The wait must
    # still end the run (it interrupts with a signal whose handler it installs itself).
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    lines = []
    with pytest.raises(GpuWaitTimeoutError, match=r"no GPU for the model actors for 0 s \(--gpu-wait-timeout\)"):
        with GpuWait(timeout_s=0.2, report_every_s=60, poll_s=0.01, gpus=lambda: 0, say=lines.append) as wait:
            try:
                time.sleep(5)  # stands for the run, blocked in Ray Data
            except KeyboardInterrupt:
                wait.raise_if_timed_out()
                raise
    signal.signal(signal.SIGINT, previous)
    assert len(lines) == 1  # said once; the next report would be a minute later
    assert signal.getsignal(WAKE_SIGNAL) is signal.SIG_DFL  # the wait's own handler is removed again


@pytest.mark.parametrize(("device", "image_size", "batch_size"), [
    ("cpu", 224, 16), ("cpu", 896, 16),
    ("cuda", 224, 128), ("cuda", 448, 32), ("cuda", 896, 8),  # about 32,768 image tokens a batch
    ("cuda", 64, 128),  # small test models: at most 128
    ("cuda", 4096, 1),  # never 0
])
def test_the_default_batch_size_follows_the_device_and_the_input_size(device, image_size, batch_size):
    assert _cfg().batch_size_for(device, image_size) == batch_size
    assert _cfg(batch_size=5).batch_size_for(device, image_size) == 5  # --batch-size wins


def test_the_summary_names_the_nodes_and_gpus_the_actors_ran_on():
    placement = ModelPlacement("cuda", 1, 4, gpus_per_actor=1, cpus_per_actor=1, batch_size=16)
    starts = [{"node_id": "b", "gpu_ids": ["0"], "pid": 1, "device": "cuda"},
              {"node_id": "a", "gpu_ids": ["0"], "pid": 2, "device": "cuda"},
              {"node_id": "a", "gpu_ids": ["0"], "pid": 3, "device": "cuda"}]  # restarted on the same GPU
    assert placement_summary(placement, starts) == {
        "device": "cuda", "batch_size": 16, "model_actors": {"min": 1, "max": 4}, "gpus_per_actor": 1,
        "model_actor_starts": 3, "model_nodes": ["a", "b"], "gpus_used": 2, "torch_devices": ["cuda"]}
    assert placement_summary(None, [])["model_actors"] == {"min": 0, "max": 0}

"""Where the model stage runs: the device (`--device`), the size of its actor pool, the wait for GPU
nodes on an autoscaling cluster, and the record of where each model actor started.

On an autoscaling cluster a job often starts before any GPU node exists: the autoscaler adds GPU
nodes only when something asks for GPUs. So a `cuda` job always asks (every model actor wants one
GPU, and Ray Data's pool queues such actors until a node can hold them), and `GpuWait` tells the
person what it waits for and ends the job after `--gpu-wait-timeout` instead of waiting for ever.
"""

from __future__ import annotations

import _thread
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from schemas.job import JobConfig

WAKE_SIGNAL = signal.SIGUSR2  # GpuWait's interrupt of the main thread (Ray uses SIGUSR1 in Tune)


class GpuWaitTimeoutError(RuntimeError):
    """The cluster had no GPU for the model actors for longer than --gpu-wait-timeout."""


@dataclass(frozen=True)
class ModelPlacement:
    """How the model stage is spread over the cluster."""

    device: str  # "cuda" or "cpu"
    min_actors: int
    max_actors: int
    gpus_per_actor: int  # 1 on cuda, 0 on cpu
    cpus_per_actor: float
    batch_size: int  # images per model batch (JobConfig.batch_size_for: --batch-size or the device's default)
    torch_threads: int | None = None  # CPU actors: intra-op threads (Ray would leave torch one)


def choose_device(requested: str, gpus_now: int, gpus_possible: int) -> str:
    """`--device` resolved: auto is cuda when the cluster has GPUs or its autoscaler can add some."""
    if requested != "auto":
        return requested
    return "cuda" if gpus_now or gpus_possible else "cpu"


def pool_size(cfg: JobConfig, device: str, gpus_now: int, gpus_possible: int) -> tuple[int, int]:
    """(min, max) model actors. A fixed --num-actors wins; on cuda the pool starts at --min-actors (1)
    and may grow to --max-actors, by default every GPU the cluster has or its autoscaler can reach; on
    cpu it is fixed (one actor by default, which gets the node's cores)."""
    if cfg.num_actors:
        return cfg.num_actors, cfg.num_actors
    if device == "cpu":
        size = cfg.max_actors or cfg.min_actors or 1
        return size, size
    low = cfg.min_actors or 1
    high = cfg.max_actors or max(low, gpus_now, gpus_possible)
    return low, high


def autoscaler_gpus() -> int:
    """The most GPUs the cluster's autoscaler says it can have (0 when it reports nothing).

    Ray exposes no public API for this. Its autoscaler (v2, as KubeRay's in-tree autoscaler runs) records
    its node types in the GCS, which `ray._private.state` reads and Ray Data's own autoscaler uses; a
    cluster without that record (the v1 cluster launcher, a hand-made cluster) answers 0. That is why
    the manifests in `cluster/` pass `--device cuda` rather than rely on `auto`.
    """
    try:
        from ray._private.state import state

        return int((state.get_max_resources_from_cluster_config() or {}).get("GPU", 0))
    except Exception:  # noqa: BLE001 - a private API: unavailable means unknown, i.e. nothing to add
        return 0


def place_model(cfg: JobConfig, image_size: int) -> ModelPlacement:
    """The placement for `cfg` on the connected cluster, for a model that reads `image_size` px images."""
    resources = ray.cluster_resources()
    gpus_now = int(resources.get("GPU", 0))
    gpus_possible = autoscaler_gpus() if cfg.device == "auto" and not gpus_now else 0
    device = choose_device(cfg.device, gpus_now, gpus_possible)
    low, high = pool_size(cfg, device, gpus_now, gpus_possible)
    batch_size = cfg.batch_size_for(device, image_size)
    if device == "cuda":
        return ModelPlacement("cuda", low, high, gpus_per_actor=1, cpus_per_actor=1, batch_size=batch_size)
    # Ray starts a 1-CPU worker with one torch thread; the model is the bulk of the work, so a CPU
    # actor gets the node's cores (measured in jobs/benchmark.py; read and decode still fit).
    threads = max(1, int(resources.get("CPU", 1)) // high)
    return ModelPlacement("cpu", low, high, gpus_per_actor=0, cpus_per_actor=1, batch_size=batch_size,
                          torch_threads=threads)


def cluster_gpus() -> int:
    return int(ray.cluster_resources().get("GPU", 0))


class GpuWait:
    """While a cuda job runs, watch that the cluster has a GPU for the model actors.

    Without one (before the autoscaler's first GPU node, or after every GPU node was lost) it says so on
    stderr, once and then every `report_every_s`; after `timeout_s` without a GPU it interrupts the
    main thread (KeyboardInterrupt), and `timed_out` tells the caller why (`raise_if_timed_out`). Use as
    a context manager around the run, on the main thread (elsewhere it falls back to SIGINT, which a
    process started in the background ignores).
    """

    def __init__(self, timeout_s: float, report_every_s: float = 60.0, poll_s: float = 1.0,
                 gpus: Callable[[], int] = cluster_gpus, say: Callable[[str], None] | None = None):
        self.timeout_s, self.report_every_s, self.poll_s = timeout_s, report_every_s, poll_s
        self.gpus = gpus
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self.timed_out = False
        self.waited_s = 0.0  # the longest stretch without a GPU
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="gpu-wait", daemon=True)

    def __enter__(self) -> GpuWait:
        # The timeout interrupts the main thread with a signal of its own, not SIGINT: a job started in the
        # background (nohup, a scheduler, CI) inherits SIGINT ignored, and Python then never raises on it.
        self._previous_handler = None
        if threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(WAKE_SIGNAL, signal.default_int_handler)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        if self._previous_handler is not None:
            signal.signal(WAKE_SIGNAL, self._previous_handler)

    def message(self, waited_s: float) -> str:
        return (f"waiting for GPU nodes: the cluster has no GPU for the model actors (--device cuda); waited "
                f"{waited_s:.0f} s, giving up after {self.timeout_s:.0f} s (--gpu-wait-timeout)")

    def _watch(self) -> None:
        since = reported = None
        while not self._stop.is_set():
            now = time.monotonic()
            if self.gpus() > 0:
                since = reported = None
            else:
                since = now if since is None else since
                self.waited_s = max(self.waited_s, now - since)
                if reported is None or now - reported >= self.report_every_s:
                    self.say(self.message(now - since))
                    reported = now
                if now - since > self.timeout_s:
                    self.timed_out = True
                    # The run blocks the main thread inside Ray Data: raise KeyboardInterrupt there.
                    _thread.interrupt_main(WAKE_SIGNAL if self._previous_handler is not None else signal.SIGINT)
                    return
            self._stop.wait(self.poll_s)

    def raise_if_timed_out(self) -> None:
        if self.timed_out:
            raise GpuWaitTimeoutError(
                f"no GPU for the model actors for {self.timeout_s:.0f} s (--gpu-wait-timeout): the cluster has no "
                "GPU node and none joined; check the autoscaler's GPU node type and quota (ray status), or run "
                "with --device cpu")


@ray.remote(num_cpus=0)
class ModelActorLog:
    """Where each model actor started (node, GPUs, process): the actors report it themselves."""

    def __init__(self):
        self._starts: list[dict] = []

    def record(self, start: dict) -> None:
        self._starts.append(start)

    def starts(self) -> list[dict]:
        return list(self._starts)


def start_actor_log() -> ray.actor.ActorHandle:
    """A ModelActorLog on the driver's node, which outlives the nodes that model actors are lost with."""
    here = ray.get_runtime_context().get_node_id()
    return ModelActorLog.options(scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False)).remote()


def where_this_actor_runs(device: str) -> dict:
    """What a model actor records about itself."""
    return {"node_id": ray.get_runtime_context().get_node_id(), "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
            "pid": os.getpid(), "device": device}


def placement_summary(placement: ModelPlacement | None, starts: list[dict]) -> dict:
    """The summary's record of the device and where the model actors ran."""
    if placement is None:
        return {"device": None, "batch_size": None, "model_actors": {"min": 0, "max": 0}, "gpus_per_actor": 0,
                "model_actor_starts": 0, "model_nodes": [], "gpus_used": 0, "torch_devices": []}
    return {
        "device": placement.device,
        "batch_size": placement.batch_size,
        "model_actors": {"min": placement.min_actors, "max": placement.max_actors},
        "gpus_per_actor": placement.gpus_per_actor,
        "model_actor_starts": len(starts),  # restarts after a lost node count again
        "model_nodes": sorted({start["node_id"] for start in starts}),
        "gpus_used": len({(start["node_id"], gpu) for start in starts for gpu in start["gpu_ids"]}),
        "torch_devices": sorted({start["device"] for start in starts}),  # cpu on nodes whose GPUs are declared only
    }

"""Resuming a run: inputs whose every task is already written are dropped before they are decoded,
and the others carry the list of tasks to skip (`done_tasks`) to the model stage. The finished work
comes from `storage.completion.plan_resume`: input files an earlier attempt finished are not read at
all, so what is shared here is only the work of the files that were in flight when it stopped."""

from __future__ import annotations

import numpy as np
import ray

from pipelines.stages.contract import Rows, StageContract
from schemas import columns as C

CONTRACT = StageContract("resume", reads=(C.IMAGE_ID,), writes=(C.DONE_TASKS,), rows=Rows.FILTER)

_finished_cache: dict[str, dict[str, frozenset[str]]] = {}


def share_finished(finished: dict[str, frozenset[str]]) -> list[ray.ObjectRef]:
    """Put the finished work in Ray's object store once; the steps get it by reference (wrapped in a
    list so that Ray passes the reference itself, which every worker then fetches once)."""
    return [ray.put(finished)]


def _fetch(shared: list[ray.ObjectRef]) -> dict[str, frozenset[str]]:
    key = shared[0].hex()
    if key not in _finished_cache:
        _finished_cache.clear()  # one run at a time per worker
        _finished_cache[key] = ray.get(shared[0])
    return _finished_cache[key]


def drop_finished(batch: dict[str, np.ndarray], finished: dict[str, frozenset[str]],
                  tasks: list[str]) -> dict[str, np.ndarray]:
    """Drop the rows whose every task is finished; give the others DONE_TASKS, the sorted list of
    their finished tasks (empty for none), for the model stage to skip."""
    done = [finished.get(image_id, frozenset()) for image_id in batch[C.IMAGE_ID]]
    keep = np.array([not done_tasks.issuperset(tasks) for done_tasks in done], dtype=bool)
    out = {name: values[keep] for name, values in batch.items()}
    out[C.DONE_TASKS] = C.list_column([sorted(d) for d, k in zip(done, keep) if k])
    return out


def skip_finished(batch: dict[str, np.ndarray], shared: list[ray.ObjectRef], tasks: list[str]) -> dict[str, np.ndarray]:
    """`drop_finished` with the finished work shared by `share_finished`: the pipeline step."""
    return CONTRACT.run(lambda rows: drop_finished(rows, _fetch(shared), tasks), batch)

"""Measuring a process and what it starts: peak memory, CPU time, Ray workers' peaks, a fresh interpreter.

Shared by the benchmarks (`benchmark.py`, `engine_bench.py`, `feeding.py`, `resume_cost.py`,
`timed_pipeline.py`), none of which imports another for these.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import resource
import threading
from pathlib import Path


def peak_rss_mib() -> float:
    """This process's peak RSS: Linux's VmHWM. Not getrusage's ru_maxrss, which survives exec: a process
    started by spawn (fork, then exec) would report at least its parent's peak."""
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:")) / 1024  # KiB


def in_fresh_process(fn, *args):
    """Run `fn(*args)` in a new interpreter, so each measurement has its own peak RSS."""
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def descendants() -> set[int]:
    """This process's descendants, from /proc."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    mine = {os.getpid()}
    for pid in sorted(parents):  # walk up each chain
        chain, cursor = [], pid
        while cursor in parents and cursor not in mine and cursor > 1 and len(chain) < 64:
            chain.append(cursor)
            cursor = parents[cursor]
        if cursor in mine:
            mine.update(chain)
    return mine - {os.getpid()}


def tree_cpu_seconds() -> float:
    """CPU seconds used so far by this process and its descendants, those they have reaped included
    (Ray's raylet reaps its workers): user + system, children's too."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = sum(resource.getrusage(who).ru_utime + resource.getrusage(who).ru_stime
                for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    for pid in descendants():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15]) / ticks  # utime, stime, cutime, cstime
    return total


class WorkerPeaks:
    """Peak RSS (VmHWM) of this process's Ray worker descendants, sampled until stopped, since
    Ray Data ends its actors when their operator is done."""

    def __init__(self, interval_s: float = 0.5):
        self.peaks: dict[int, tuple[str, float]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval_s,), daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()

    def _run(self, interval_s: float) -> None:
        while not self._stop.wait(interval_s):
            self._sample()

    def _sample(self) -> None:
        for pid in descendants():
            try:
                name = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            if not name.startswith("ray::"):
                continue
            hwm = next((int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmHWM")), 0)
            self.peaks[pid] = (name, max(hwm, self.peaks.get(pid, ("", 0.0))[1]))

    def by_name(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, mib in self.peaks.values():
            out[name] = max(out.get(name, 0.0), round(mib, 1))
        return out

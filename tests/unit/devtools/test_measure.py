"""Process measurements shared by the benchmarks."""

import os
import subprocess
import sys

from pipelines.devtools.measure import descendants, in_fresh_process, peak_rss_mib, tree_cpu_seconds


def _pid_and_peak() -> tuple[int, float]:
    return os.getpid(), peak_rss_mib()


def test_a_fresh_process_has_its_own_pid_and_peak():
    pid, peak = in_fresh_process(_pid_and_peak)
    assert pid != os.getpid() and 0 < peak


def test_descendants_and_their_cpu_time_are_counted():
    before = tree_cpu_seconds()
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        while child.pid not in descendants():
            pass
        deadline_cpu = before + 0.25
        while tree_cpu_seconds() < deadline_cpu and child.poll() is None:
            pass
        assert tree_cpu_seconds() >= deadline_cpu
    finally:
        child.kill()
        child.wait()

"""A throwaway single-node Ray head for integration tests.

Usage::

    with run_ray_head(tmp_path) as head:
        subprocess.run(
            [RAY_EXE, "job", "submit", "--address", head.address,
             "--working-dir", ".", "--", "python", "hello.py"],
            env={**os.environ, **head.env}, check=True)

``ray job submit`` waits for the job and exits 1 if it fails (0 on success).
The working dir is uploaded minus what its ``.gitignore``/``.rayignore`` files
exclude (and ``.git``, ``.venv``, ``venv``, ``__pycache__``); the job runs in that
copy, so ignored files (``models/``, ``out/``) are not there: use absolute paths.

The head runs with token auth ON, like production clusters.  Clients get the
token through ``head.env`` (``RAY_AUTH_MODE=token`` + ``RAY_AUTH_TOKEN``), so
nothing is written to the shared ``~/.ray/auth_token``.

Other Ray clusters may run on the same machine, so every port is chosen free,
the temp dir is private, and teardown kills only this cluster's processes
(never ``ray stop``: it kills every Ray process of the user).

Needs ``ray[default]``: without the dashboard extras the head starts, but with
no HTTP server, so ``ray job submit`` cannot work.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

VENV_BIN = Path(sys.executable).parent
RAY_EXE = VENV_BIN / "ray"


@dataclass(frozen=True)
class RayHead:
    address: str  # "http://127.0.0.1:<dashboard>": for `ray job submit --address`
    gcs_address: str  # "127.0.0.1:<gcs>": for `ray.init(address=...)`
    env: dict[str, str] = field(repr=False)  # add to a client subprocess's env
    temp_dir: Path  # Ray's --temp-dir while running; moved to tmp_dir/ray after


def _free_ports(n: int) -> list[int]:
    # Hold all sockets open until every port is picked, so they are distinct.
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _cluster_pids(sid: int, marker: bytes) -> list[int]:
    """This cluster's live processes, and no one else's: Ray's daemons share
    the session of `ray start` (some rename themselves, clobbering their
    environ), while job drivers setsid away but keep our unique token in env."""
    pids = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit() or int(d.name) == os.getpid():
            continue
        try:
            stat = (d / "stat").read_text()
            if stat[stat.rindex(")") + 2] == "Z":
                continue  # zombie: already dead, just not reaped yet
            if os.getsid(int(d.name)) == sid or marker in (d / "environ").read_bytes():
                pids.append(int(d.name))
        except OSError:
            pass  # gone, or not ours
    return pids


def _jobs_api_ready(address: str, token: str) -> bool:
    # /api/jobs/ is served by a dashboard module that loads after the HTTP
    # server starts; it is what `ray job submit` needs.
    req = urllib.request.Request(f"{address}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def run_ray_head(tmp_dir: Path | str, timeout_s: float = 90.0) -> Iterator[RayHead]:
    """Start a token-auth Ray head on 127.0.0.1 (2 CPUs); yield a RayHead; stop it.

    Ray's files (logs under ``session_latest/logs``) end up in ``tmp_dir/ray``
    when the context exits; ``timeout_s`` bounds the wait for the head.
    """
    tmp_dir = Path(tmp_dir)
    tmp_dir.mkdir(parents=True, exist_ok=True)
    # Ray's unix sockets live under --temp-dir and AF_UNIX paths are capped at
    # 107 bytes, which pytest's tmp_path easily exceeds: run in a short dir.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rayh-", dir="/tmp"))
    token = secrets.token_hex(32)
    gcs_port, dash_port, client_port, agent_port = _free_ports(4)
    address = f"http://127.0.0.1:{dash_port}"

    client_env = {
        "RAY_AUTH_MODE": "token",  # without it a client sends no token -> 401
        "RAY_AUTH_TOKEN": token,  # beats RAY_AUTH_TOKEN_PATH and ~/.ray/auth_token
        "RAY_ADDRESS": address,
        # Linux otherwise rewrites --node-ip-address 127.0.0.1 to the host IP;
        # drivers must agree with the head on the node IP.
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    }
    head_env = {
        **os.environ,
        **client_env,
        "RAY_USAGE_STATS_ENABLED": "0",
        # On SIGTERM a busy node otherwise "drains" for up to 30 s first.
        "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
    }
    head_env.pop("RAY_ADDRESS")
    head_env.pop("RAY_AUTH_TOKEN_PATH", None)
    # Job entrypoints run `python ...` via the shell with the head's PATH:
    # make that the venv's python even if the venv is not activated.
    head_env["PATH"] = f"{VENV_BIN}{os.pathsep}{head_env.get('PATH', '')}"

    cmd = [
        str(RAY_EXE), "start", "--head", "--block", "--disable-usage-stats",
        "--node-ip-address", "127.0.0.1",
        "--port", str(gcs_port),
        "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dash_port),
        "--include-dashboard", "true",
        # These two default to fixed ports (10001, 52365) that would clash
        # with any other Ray cluster on the machine.
        "--ray-client-server-port", str(client_port),
        "--dashboard-agent-listen-port", str(agent_port),
        "--num-cpus", "2",
        "--temp-dir", str(ray_tmp),
    ]  # fmt: skip
    log_path = ray_tmp / "ray-start.log"
    with open(log_path, "wb") as log:
        # --block keeps `ray start` alive as the owner of the node; SIGTERM to
        # it shuts the node down in order.
        proc = subprocess.Popen(
            cmd, env=head_env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    try:
        deadline = time.monotonic() + timeout_s
        while not _jobs_api_ready(address, token):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"Ray head not up (exit={proc.poll()}); logs go to {tmp_dir}."
                    f" Is ray[default] installed?\n{log_path.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield RayHead(address, f"127.0.0.1:{gcs_port}", client_env, ray_tmp)
    finally:
        _stop(proc, token.encode())
        _keep_logs(ray_tmp, tmp_dir)


def _stop(proc: subprocess.Popen, marker: bytes) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            pass
    # Kill whatever survived the orderly shutdown (agents, workers, job
    # drivers, a hung gcs_server).
    deadline = time.monotonic() + 15
    while (pids := _cluster_pids(proc.pid, marker)) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
        proc.poll()  # reap `ray start` itself if it was among them


def _keep_logs(src: Path, tmp_dir: Path) -> None:
    # Move Ray's files into the test's tmp dir for post-mortems; if that is
    # impossible (other filesystem), at least do not leak them in /tmp.
    dst = tmp_dir / "ray"
    if dst.exists():  # the context ran twice with the same tmp_dir
        dst = tmp_dir / src.name
    try:
        os.rename(src, dst)
    except OSError:
        shutil.rmtree(src, ignore_errors=True)
        return
    latest = dst / "session_latest"  # an absolute symlink into src: re-point it
    if latest.is_symlink():
        target = Path(os.readlink(latest)).name
        latest.unlink()
        latest.symlink_to(target)

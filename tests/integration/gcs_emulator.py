"""Run a real, local GCS emulator for integration tests.

Starts the ``gcp-storage-emulator`` package as a subprocess on 127.0.0.1 (free
port, in-memory storage), waits until it answers, and always kills it on exit.

Usage::

    with run_gcs_emulator() as gcs, gcs.activate():   # env set before ray.init
        gcs.upload_tree("tests/data/images", "bucket", "images")
        ray.init(address="local", num_cpus=2, include_dashboard=False)
        fs, root = fsspec.core.url_to_fs("gs://bucket/images")

Trap: gcsfs, fsspec and google-auth read ``STATIC_ENV`` only when they are
first imported.  Fresh processes (Ray workers started after ``os.environ`` was
updated) are fine; in an already-running test process ``activate()`` patches
the live state too.  Best of all, apply ``STATIC_ENV`` at the top of
conftest.py, before anything imports them.  ``gcs.filesystem()`` needs no
environment at all.

With ``pyarrow.fs.PyFileSystem(FSSpecHandler(fs))``, Ray Data takes paths with
or without "gs://" (it strips the scheme), but ``pyarrow.dataset`` wants them
without.  Never give Ray a gs:// path without ``filesystem=``: it then builds
pyarrow's native GcsFileSystem, which ignores the emulator and hangs.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

HOST = "127.0.0.1"

# Port-independent settings; STORAGE_EMULATOR_HOST is added per emulator.
STATIC_ENV = {
    # Otherwise gcsfs.GCSFileSystem is ExtendedGcsFileSystem, which first asks
    # the storage-control gRPC API for the bucket type: against the emulator
    # that is a TLS handshake to a plain-HTTP port, retried for 60 s.
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
    # fsspec config -> GCSFileSystem(token="anon"): gcsfs never looks for
    # Google credentials (google.auth.default) nor the GCE metadata server.
    "FSSPEC_GCS_TOKEN": "anon",
    # google-auth: never probe the metadata server, whatever code path asks.
    "NO_GCE_CHECK": "true",
}


@dataclass
class GcsEmulator:
    """A running emulator: where it listens and how to point gcsfs at it."""

    endpoint: str  # e.g. "http://127.0.0.1:40123"
    env: dict[str, str]  # STATIC_ENV + STORAGE_EMULATOR_HOST

    def filesystem(self):
        """A gcsfs filesystem bound to this emulator, independent of os.environ.

        The core class explicitly (see STATIC_ENV), and endpoint_url so that it
        also works unpickled in a Ray worker that lacks the environment.
        """
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(
            endpoint_url=self.endpoint, token="anon", skip_instance_cache=True
        )

    def create_bucket(self, bucket: str) -> None:
        fs = self.filesystem()
        if not fs.exists(bucket):
            fs.mkdir(bucket)

    def upload_tree(self, local_dir: str | os.PathLike, bucket: str, prefix: str = "") -> list[str]:
        """Create ``bucket`` and copy every file under ``local_dir`` to
        ``gs://bucket/prefix/<relative path>``.  Returns the gs:// URLs, sorted."""
        self.create_bucket(bucket)
        fs = self.filesystem()
        root = Path(local_dir)
        base = "/".join(p for p in (bucket, prefix.strip("/")) if p)
        urls = []
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            target = f"{base}/{path.relative_to(root).as_posix()}"
            fs.put_file(str(path), target)
            urls.append(f"gs://{target}")
        return urls

    @contextlib.contextmanager
    def activate(self) -> Iterator[None]:
        """Export ``env`` into os.environ for the duration (so a later
        ray.init() passes it to the workers) and patch what this process has
        already read at import time: the fsspec config and the "gs"/"gcs"
        registry entry.  Everything is restored on exit."""
        import fsspec
        import fsspec.config
        from fsspec.registry import _registry  # "gs" -> class, once resolved
        from gcsfs.core import GCSFileSystem

        protos = ("gs", "gcs")
        saved_env = {k: os.environ.get(k) for k in self.env}
        saved_conf = {p: fsspec.config.conf.get(p) for p in protos}
        saved_reg = {p: _registry.get(p) for p in protos}
        os.environ.update(self.env)
        for p in protos:
            fsspec.config.conf[p] = {**(saved_conf[p] or {}), "token": "anon"}
            fsspec.register_implementation(p, GCSFileSystem, clobber=True)
        _clear_gcsfs_instance_cache()
        try:
            yield
        finally:
            for k, v in saved_env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for p in protos:
                for store, old in ((fsspec.config.conf, saved_conf[p]),
                                   (_registry, saved_reg[p])):
                    if old is None:
                        store.pop(p, None)
                    else:
                        store[p] = old
            _clear_gcsfs_instance_cache()


# Runs in the child: start the emulator, but exit as soon as the parent (the
# test process) is gone, even if it was SIGKILLed and never ran its `finally`.
_BOOT = """
import os, sys, threading, time
parent = int(sys.argv[1])
def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(0)
threading.Thread(target=watch, daemon=True).start()
from gcp_storage_emulator.__main__ import main
main(sys.argv[2:])
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _clear_gcsfs_instance_cache() -> None:
    # fsspec caches filesystem instances (and their directory listings); an
    # instance from an earlier emulator would serve stale listings.
    if "gcsfs" in sys.modules:
        import gcsfs.core

        gcsfs.core.GCSFileSystem.clear_instance_cache()
        sys.modules["gcsfs"].GCSFileSystem.clear_instance_cache()


@contextlib.contextmanager
def run_gcs_emulator(timeout: float = 20.0) -> Iterator[GcsEmulator]:
    """Start the emulator, yield a :class:`GcsEmulator`, then kill it.

    Raises RuntimeError if it does not answer within ``timeout`` seconds.
    """
    port = _free_port()
    endpoint = f"http://{HOST}:{port}"
    cmd = [sys.executable, "-c", _BOOT, str(os.getpid()), "start",
           "--host", HOST, "--port", str(port), "--in-memory", "--quiet"]
    # Log to a file, not a pipe: a pipe nobody reads can fill and block it.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)
    try:
        _wait_until_up(proc, log, endpoint, timeout)
        # STORAGE_EMULATOR_HOST: gcsfs sends every request here, read per call.
        yield GcsEmulator(endpoint, {**STATIC_ENV, "STORAGE_EMULATOR_HOST": endpoint})
    finally:
        proc.kill()
        proc.wait(timeout=10)
        log.close()
        _clear_gcsfs_instance_cache()


def _wait_until_up(proc: subprocess.Popen, log, endpoint: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    # No proxy handler: this probe must only ever talk to 127.0.0.1.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"GCS emulator exited with code {proc.returncode}:\n"
                               + _tail(log))
        try:
            with opener.open(f"{endpoint}/storage/v1/b", timeout=1):
                return
        except urllib.error.HTTPError:
            return  # any HTTP answer means the server is up
        except OSError:  # refused / reset / timeout while it starts
            time.sleep(0.1)
    raise RuntimeError(f"GCS emulator did not answer at {endpoint} within "
                       f"{timeout:g} s; its output:\n" + _tail(log))


def _tail(log, limit: int = 4000) -> str:
    log.seek(0)
    return log.read().decode(errors="replace")[-limit:]

"""Credentials the job sees and uses never reach its output, its summaries or its logs (issue 5, "security").

The images are served over HTTP on 127.0.0.1 by a server that answers 401 without the right basic-auth
credentials, and the job is given them in its --input URL: it can only annotate them by using them.
"""

import base64
import contextlib
import json
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import ray

from tests.images import encode, solid
from tests.integration.conftest import read_output, short_budgets
from tests.jobs import load_job

pytestmark = pytest.mark.integration

# Fakes, each planted in one place, so a leak says which way it went.
URL_PASSWORD = "urlPasswordPlanted0123456789"  # noqa: S105
HF_TOKEN = "hf_envTokenPlanted0123456789abcdef"  # noqa: S105
AWS_SECRET = "awsSecretPlanted0123456789/abcdEF"  # noqa: S105
PLANTED = (URL_PASSWORD, HF_TOKEN, AWS_SECRET)


class BasicAuthHandler(SimpleHTTPRequestHandler):
    """Files of one directory, to requests that carry the expected basic-auth header only."""

    expected = ""

    def do_GET(self):
        if self.headers.get("Authorization") != self.expected:
            return self.send_error(401)
        return super().do_GET()

    def do_HEAD(self):
        if self.headers.get("Authorization") != self.expected:
            return self.send_error(401)
        return super().do_HEAD()

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def basic_auth_server(root: Path, user: str, password: str):
    """Serve `root` on 127.0.0.1 (a free port) until the block ends; yields http://host:port."""
    handler = type("Handler", (BasicAuthHandler,), {
        "expected": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def leaks(texts: list[str]) -> list[str]:
    return [secret for secret in PLANTED if any(secret in text for text in texts)]


def test_planted_credentials_reach_no_row_summary_or_log(tmp_path, ray_local, tiny_model_dir, capfd, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    site = tmp_path / "site"
    site.mkdir()
    (site / "a.jpg").write_bytes(encode(solid(40, 30), "JPEG"))
    (site / "b.png").write_bytes(encode(solid(20, 30, (0, 90, 0)), "PNG"))
    runs = tmp_path / "runs"
    common = ["--model", tiny_model_dir, "--tasks", "caption,detect", "--classes", "car",
              "--max-new-tokens", short_budgets("caption,detect")]

    with basic_auth_server(site, "labeller", URL_PASSWORD) as server:
        authorised = server.replace("http://", f"http://labeller:{URL_PASSWORD}@")
        # a run that reads through the credentials
        done = load_job().main(["--input", f"{authorised}/", "--output", str(tmp_path / "out"),
                                "--summary-uri", str(runs / "done.json"), *common])
        # a run refused with an error message about the same URL
        refused = load_job().main(["--input", f"{authorised}/missing/", "--output", str(tmp_path / "out2"),
                                   "--summary-uri", str(runs / "refused.json"), *common])
    captured = capfd.readouterr()
    assert (done, refused) == (0, 2)

    table = read_output(str(tmp_path / "out"))
    assert table.num_rows == 4
    assert {row["status"] for row in table.to_pylist()} <= {"ok", "invalid_output"}  # read with the credentials
    assert {row["source_uri"] for row in table.to_pylist()} == {
        f"{server.replace('http://', 'http://REDACTED@')}/{name}" for name in ("a.jpg", "b.png")}
    summary = json.loads((runs / "done.json").read_text())
    assert summary["input"] == f"{server.replace('http://', 'http://REDACTED@')}/"
    assert "input not found: http://REDACTED@127.0.0.1:" in json.loads((runs / "refused.json").read_text())["error"]

    written = [captured.out, captured.err, str(table.to_pylist())]  # Parquet pages may be compressed: values
    written += [p.read_bytes().decode("latin-1") for root in (tmp_path / "out", runs) for p in root.rglob("*")
                if p.is_file()]
    # Ray's own logs of this session (drivers, workers, Ray Data); private API: the public one has no log dir
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    written += [p.read_bytes().decode("latin-1") for p in logs.rglob("*") if p.is_file()]
    assert leaks(written) == []
    assert leaks([json.dumps({"input": authorised, "token": HF_TOKEN, "aws": AWS_SECRET})]) == list(PLANTED)

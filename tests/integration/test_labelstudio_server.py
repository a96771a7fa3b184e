"""The Label Studio export against a real Label Studio 1.23.2 server: a project made with the exported labelling
config takes the exported tasks with strict prediction validation on, and gives back one task per image, every
region with its score, the model version, and images that load, served both ways the docs describe (Label
Studio's local-files storage, and a plain HTTP server with --image-url-prefix). The way back: annotations made
through the REST API with known edits come back through Label Studio's JSON export as exactly those acceptance
counts, and a sharded export synced as source storage gives the tasks of an import.

Label Studio lives in its own environment, `.labelstudio-venv/` (built by .ci/run from
.ci/labelstudio-requirements.txt; or set LABEL_STUDIO_BIN to another one's `label-studio`). Without it this
test is skipped. The server runs on 127.0.0.1 with its own data directory and is stopped by its PID.
"""

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import pytest
import requests

from pipelines.review.evaluate import evaluate_rows
from pipelines.review.export import export
from pipelines.review.export.source import UrlMap
from pipelines.review.ground_truth import coco_from_labelstudio, read_ground_truth
from schemas.rows import LabelRow
from tests.labelled import NOW, shapes_rows, write_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
LABEL_STUDIO = Path(os.environ.get("LABEL_STUDIO_BIN", REPO / ".labelstudio-venv" / "bin" / "label-studio"))
TOKEN = "0123456789abcdef0123456789abcdef01234567"
# With this flag Label Studio refuses (400) an import whose predictions do not fit the config; without it
# it answers 201 and only logs "Prediction validation failed" (docs/exports.md).
STRICT_VALIDATION = "fflag_feat_utc_210_prediction_validation_15082025"
QUESTIONS = {"answer en how many shapes?": ("2", 0.7), "answer en what colour is the largest shape?": ("red", 0.4)}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def process(command: list[str], log: Path, env: dict | None = None):
    """A process in its own session, stopped by its PID (its group, which it leads) at the end."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    try:
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(url: str, proc: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url}: the server exited ({proc.returncode}): {log.read_text()[-3000:]}")
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(url, timeout=5).status_code == 200:
                return
        time.sleep(1)
    raise RuntimeError(f"{url} did not answer in {seconds} s: {log.read_text()[-3000:]}")


class Api:
    def __init__(self, base: str):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Token {TOKEN}"

    def post(self, path: str, body) -> requests.Response:
        return self.session.post(self.base + path, json=body, timeout=120)

    def get(self, path: str, **params) -> requests.Response:
        return self.session.get(self.base + path, params=params, timeout=120)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Label Studio on 127.0.0.1 serving local files below `root`, and an HTTP server on `root`."""
    if not LABEL_STUDIO.exists():
        pytest.skip(f"no Label Studio environment at {LABEL_STUDIO} (.ci/run builds .labelstudio-venv)")
    root = tmp_path_factory.mktemp("ls-root")
    home = tmp_path_factory.mktemp("ls-home")
    port, files_port = free_port(), free_port()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8",
           "LABEL_STUDIO_BASE_DATA_DIR": str(home / "data"), "LATEST_VERSION_CHECK": "false",
           "LABEL_STUDIO_USERNAME": "ci@example.org", "LABEL_STUDIO_PASSWORD": "ci-password-19",
           "LABEL_STUDIO_USER_TOKEN": TOKEN, STRICT_VALIDATION: "true",
           "LOCAL_FILES_SERVING_ENABLED": "true", "LOCAL_FILES_DOCUMENT_ROOT": str(root)}
    log = home / "label-studio.log"
    with (process([str(LABEL_STUDIO), "start", "--no-browser", "--internal-host", "127.0.0.1", "-p", str(port),
                   "--data-dir", str(home / "data"), "--enable-legacy-api-token"], log, env) as proc,
          process([sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(root),
                   str(files_port)], home / "http.log") as files):
        wait_for(f"http://127.0.0.1:{port}/health", proc, log)
        wait_for(f"http://127.0.0.1:{files_port}/", files, home / "http.log", seconds=30)
        yield Api(f"http://127.0.0.1:{port}"), root, f"http://127.0.0.1:{files_port}", log


@pytest.fixture(scope="module")
def labelled_below_root(server):
    """Shapes rows (detect, segment, caption, two answers for one image, an unreadable image) whose images lie
    below the servers' root, as a finished dataset."""
    _, root, _, _ = server
    rows, _ = shapes_rows(root / "shapes")
    (root / "shapes" / "images" / "broken.png").write_bytes(b"not an image")
    first = rows[0]
    for prompt, (text, score) in QUESTIONS.items():
        rows.append(LabelRow(image_id=first.image_id, source_uri=first.source_uri, width=first.width,
                             height=first.height, task="answer", prompt=prompt, model=first.model, raw_output=text,
                             status="ok", text=text, text_score=score, run_id="run-1", created_at=NOW))
    return write_rows(rows, root / "dataset"), rows


def import_export(api: Api, dataset: Path, urls: UrlMap, out: Path) -> tuple[int, list[dict], list[dict]]:
    """Export, create a project with the exported config, import the tasks; (project id, exported, read back)."""
    export("labelstudio", str(dataset), str(out / "tasks.json"), urls=urls, label_config=str(out / "config.xml"))
    config = (out / "config.xml").read_text()
    assert api.post("/api/projects/validate/", {"label_config": config}).status_code == 204
    response = api.post("/api/projects/", {"title": out.name, "label_config": config})
    assert response.status_code == 201, response.text
    project = response.json()["id"]
    exported = json.loads((out / "tasks.json").read_text())
    response = api.post(f"/api/projects/{project}/import", exported)
    assert response.status_code == 201, response.text
    listed = api.get(f"/api/projects/{project}/tasks", page_size=1000).json()
    read = [api.get(f"/api/tasks/{task['id']}").json() for task in listed]
    return project, exported, read


def check_read_back(exported: list[dict], read: list[dict], rows: list) -> None:
    assert len(read) == len(exported) == len({row.image_id for row in rows}) == 7
    by_image = {task["data"]["image_id"]: task for task in exported}
    for task in read:
        original = by_image[task["data"]["image_id"]]
        assert task["data"] == original["data"]
        (prediction,) = task["predictions"]
        (sent,) = original["predictions"]
        assert prediction["model_version"] == sent["model_version"] == "models/shapes-paligemma"
        assert prediction["score"] == pytest.approx(sent["score"])
        got = sorted((r["from_name"], r["type"], r.get("score"), json.dumps(r["value"], sort_keys=True))
                     for r in prediction["result"])
        assert got == sorted((r["from_name"], r["type"], r.get("score"), json.dumps(r["value"], sort_keys=True))
                             for r in sent["result"])
    # every row's objects and texts are regions of its image's task
    regions = Counter(r["from_name"] for task in read for r in task["predictions"][0]["result"])
    ok = [row for row in rows if row.status == "ok"]
    assert regions == {"detect": sum(len(r.boxes) for r in ok if r.task == "detect"),
                       "segment": sum(len(r.masks) for r in ok if r.task == "segment"),
                       "caption_en": sum(r.task == "caption" for r in ok),
                       "answer_en_how_many_shapes": 1, "answer_en_what_colour_is_the_largest_shape": 1}
    (broken,) = [task for task in read if task["data"]["problems"]]
    assert "image_error" in broken["data"]["errors"] and broken["predictions"][0]["result"] == []


def test_tasks_served_by_an_http_server_import_strictly_and_read_back(server, labelled_below_root, tmp_path):
    api, root, files, log = server
    dataset, rows = labelled_below_root
    _, exported, read = import_export(api, dataset, UrlMap.parse([f"{root}/={files}/"]), tmp_path)
    check_read_back(exported, read, rows)
    for task in read:
        assert task["data"]["image"].startswith(files + "/shapes/images/")
        assert requests.get(task["data"]["image"], timeout=30).status_code == 200, task["data"]["image"]
    assert "Prediction validation failed" not in log.read_text()


def test_tasks_served_from_label_studio_local_files_storage(server, labelled_below_root, tmp_path):
    api, root, _, log = server
    dataset, rows = labelled_below_root
    project, exported, read = import_export(api, dataset, UrlMap.parse([f"{root}/=/data/local-files/?d="]), tmp_path)
    # Label Studio serves /data/local-files/ only below a Local Storage folder of some project (404 otherwise)
    response = api.post("/api/storages/localfiles/", {"project": project, "title": "shapes",
                                                     "path": str(root / "shapes" / "images"), "use_blob_urls": True})
    assert response.status_code == 201, response.text
    check_read_back(exported, read, rows)
    for task in read:
        url = task["data"]["image"]
        assert url.startswith("/data/local-files/?d=shapes/images/")
        assert api.get(url).status_code == 200, url
        assert requests.get(api.base + url, timeout=30).status_code in (401, 403)  # not without the token
    assert "Prediction validation failed" not in log.read_text()


def test_strict_validation_is_on_so_a_label_outside_the_config_is_refused(server, labelled_below_root, tmp_path):
    api, _, _, _ = server
    dataset, _ = labelled_below_root
    project, exported, _ = import_export(api, dataset, UrlMap(), tmp_path)
    # the task order follows image ids, hashes of temporary paths: the unreadable image's empty task may come first
    wrong = [json.loads(json.dumps(next(task for task in exported if task["predictions"][0]["result"])))]
    rectangle = next(r for r in wrong[0]["predictions"][0]["result"] if r["type"] == "rectanglelabels")
    rectangle["value"]["rectanglelabels"] = ["hexagon"]
    response = api.post(f"/api/projects/{project}/import", wrong)
    assert response.status_code == 400 and "hexagon" in response.text


def reviewed_result(result: list[dict], edits: Counter) -> list[dict]:
    """An annotator's result made from a prediction's regions, with at most one of each edit not yet made
    (`edits` counts what was done): delete a detect box, move one by a tenth of its width (IoU 0.82: adjusted),
    relabel one, add one, delete a mask, rewrite the caption. Scores are left out: people give none."""
    regions = [{k: v for k, v in json.loads(json.dumps(r)).items() if k != "score"} for r in result]
    detect = [r for r in regions if r["from_name"] == "detect"]
    template = json.loads(json.dumps(detect[0])) if detect else None
    for region in detect:
        pending = [edit for edit in ("delete_box", "move_box", "relabel_box") if edits[edit] == 0]
        if not pending:
            break
        if pending[0] == "delete_box":
            regions.remove(region)
        elif pending[0] == "move_box":
            region["value"]["x"] += region["value"]["width"] / 10
        else:
            labels = ["circle", "square", "triangle"]
            region["value"]["rectanglelabels"] = [labels[(labels.index(region["value"]["rectanglelabels"][0]) + 1) % 3]]
        edits[pending[0]] += 1
    if edits["add_box"] == 0 and template is not None:
        template["id"] = "added"
        template["value"].update(x=1.0, y=1.0, width=5.0, height=5.0)
        regions.append(template)
        edits["add_box"] += 1
    masks = [r for r in regions if r["from_name"] == "segment"]
    if edits["delete_mask"] == 0 and masks:
        regions.remove(masks[0])
        edits["delete_mask"] += 1
    captions = [r for r in regions if r["from_name"] == "caption_en"]
    if edits["edit_caption"] == 0 and captions:
        captions[0]["value"] = {"text": [captions[0]["value"]["text"][0] + " on grey"]}
        edits["edit_caption"] += 1
    return regions


def test_annotators_edits_come_back_as_the_acceptance_counts(server, labelled_below_root, tmp_path):
    """The way back through the real server: annotations made through the REST API from the predictions with a
    known set of edits, Label Studio's own JSON export read by jobs/evaluate.py, and the acceptance report
    counting exactly those edits."""
    api, _, _, _ = server
    dataset, rows = labelled_below_root
    project, exported, read = import_export(api, dataset, UrlMap(), tmp_path)
    edits: Counter = Counter()
    sent = []
    for task in read:
        result = reviewed_result(task["predictions"][0]["result"], edits)
        response = api.post(f"/api/tasks/{task['id']}/annotations/", {"result": result, "was_cancelled": False})
        assert response.status_code == 201, response.text
        sent.append({"data": task["data"], "annotations": [{"id": 1, "result": result}]})
    assert edits == Counter(delete_box=1, move_box=1, relabel_box=1, add_box=1, delete_mask=1, edit_caption=1)
    response = api.get(f"/api/projects/{project}/export", exportType="JSON")
    assert response.status_code == 200, response.text[:500]
    (tmp_path / "review.json").write_text(response.text)
    (tmp_path / "report.json").unlink(missing_ok=True)
    done = subprocess.run([sys.executable, str(REPO / "jobs" / "evaluate.py"), "--predictions", str(dataset),
                           "--ground-truth", str(tmp_path / "review.json"), "--output", str(tmp_path / "report.json")],
                          capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    acceptance = json.loads((tmp_path / "report.json").read_text())["acceptance"]
    ok = [row for row in rows if row.status == "ok"]
    boxes = sum(len(row.boxes) for row in ok if row.task == "detect")
    masks = sum(len(row.masks) for row in ok if row.task == "segment")
    detect = {k: acceptance["detect"][k] for k in ("kept", "adjusted", "relabelled", "deleted", "added")}
    assert detect == {"kept": boxes - 3, "adjusted": 1, "relabelled": 1, "deleted": 1, "added": 1}, done.stdout
    segment = {k: acceptance["segment"][k] for k in ("kept", "adjusted", "relabelled", "deleted", "added")}
    assert segment == {"kept": masks - 1, "adjusted": 0, "relabelled": 0, "deleted": 1, "added": 0}, done.stdout
    assert acceptance["caption"]["edited"] == 1 and acceptance["caption"]["edit_distance"] == len(" on grey")
    # the mAPs equal those of the annotations as they were sent: Label Studio's export lost nothing
    report = json.loads((tmp_path / "report.json").read_text())
    as_sent = evaluate_rows([row.model_dump() for row in rows], coco_from_labelstudio(sent))
    for key in ("detect", "segment_boxes", "segment_masks"):
        assert report[key]["mAP"] == pytest.approx(as_sent[key]["mAP"])
    assert report["detect"]["mAP"] < 1.0  # the edits cost the pre-labels
    # Label Studio's own COCO export (rectangles only) scores the detect boxes the same
    response = api.get(f"/api/projects/{project}/export", exportType="COCO")
    assert response.status_code == 200
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        coco = json.loads(archive.read(next(n for n in archive.namelist() if n.endswith(".json"))))
    from_coco = evaluate_rows([row.model_dump() for row in rows if row.task == "detect"], read_ground_truth(coco))
    assert from_coco["unknown_images"] == 0
    assert from_coco["detect"]["mAP"] == pytest.approx(report["detect"]["mAP"], abs=1e-3)
    assert "segment_masks" not in from_coco  # its COCO export keeps no brushes: the JSON export is the one to use
    # the snapshot export API with full predictions (the plain JSON export gives prediction ids only) reads
    # back as the same review
    snapshot = export_snapshot(api, project, {"predictions": {"only_id": False}})
    assert all(isinstance(task["predictions"][0], dict) and "result" in task["predictions"][0] for task in snapshot)
    assert [task["predictions"][0]["result"] for task in sorted(snapshot, key=lambda t: t["id"])] == \
        [task["predictions"][0]["result"] for task in sorted(read, key=lambda t: t["id"])]
    from_snapshot = evaluate_rows([row.model_dump() for row in rows], read_ground_truth(snapshot))
    assert from_snapshot["acceptance"] == acceptance


def export_snapshot(api: Api, project: int, serialization_options: dict) -> list[dict]:
    """Label Studio's export snapshot API: create one, wait until Label Studio says it is completed, download."""
    response = api.post(f"/api/projects/{project}/exports/", {"title": "review",
                                                              "serialization_options": serialization_options})
    assert response.status_code == 201, response.text[:500]
    number = response.json()["id"]
    deadline = time.monotonic() + 120
    while (status := api.get(f"/api/projects/{project}/exports/{number}").json()["status"]) != "completed":
        assert status != "failed" and time.monotonic() < deadline, status
        time.sleep(0.2)
    response = api.get(f"/api/projects/{project}/exports/{number}/download", exportType="JSON")
    assert response.status_code == 200, response.text[:500]
    return response.json()


def test_a_sharded_export_synced_as_source_storage_gives_the_tasks_of_an_import(server, labelled_below_root, tmp_path):
    """jobs/export.py --shard-size: the task files, synced by Label Studio from a Local Storage folder, give the same
    tasks and regions as the one-file export imported through the API."""
    api, root, _, _ = server
    dataset, rows = labelled_below_root
    _, exported, read = import_export(api, dataset, UrlMap(), tmp_path)
    shards = root / "task-shards"
    export("labelstudio", str(dataset), str(shards), shard_size=3)
    assert len(list(shards.iterdir())) == 3  # 7 tasks in files of at most 3
    config = (tmp_path / "config.xml").read_text()
    response = api.post("/api/projects/", {"title": "synced", "label_config": config})
    assert response.status_code == 201, response.text
    project = response.json()["id"]
    response = api.post("/api/storages/localfiles/", {"project": project, "title": "shards", "path": str(shards),
                                                     "regex_filter": r".*\.json", "use_blob_urls": False})
    assert response.status_code == 201, response.text
    storage = response.json()["id"]
    assert api.post(f"/api/storages/localfiles/{storage}/sync", {}).status_code == 200
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # the sync may finish after the call returns
        listed = api.get(f"/api/projects/{project}/tasks", page_size=1000).json()
        if len(listed) >= len(exported):
            break
        time.sleep(1)
    synced = [api.get(f"/api/tasks/{task['id']}").json() for task in listed]

    def regions(tasks):
        return sorted((task["data"]["image_id"], r["from_name"], json.dumps(r["value"], sort_keys=True))
                      for task in tasks for r in task["predictions"][0]["result"])

    assert len(synced) == len(read) == 7
    assert regions(synced) == regions(read)
    assert api.post(f"/api/storages/localfiles/{storage}/sync", {}).status_code == 200  # a re-sync adds nothing
    time.sleep(2)
    assert len(api.get(f"/api/projects/{project}/tasks", page_size=1000).json()) == 7

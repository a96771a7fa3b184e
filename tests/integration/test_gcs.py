"""gs:// in and out, through gcsfs, against a real GCS emulator on 127.0.0.1."""

import json

import pytest

from pipelines.devtools.tiny_model import save_random_vae
from pipelines.run import annotate
from pipelines.stages.read import image_id_for
from schemas.job import JobConfig
from tests.integration.conftest import read_output, short_budgets
from tests.integration.corpus import write_image_tree
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration


def test_bucket_to_bucket(tmp_path, gcs, ray_local, tiny_model_dir):
    sizes = write_image_tree(tmp_path / "images")
    uris = gcs.upload_tree(tmp_path / "images", "labels-test", "raw/images")
    (vae_uri,) = gcs.upload_tree(save_random_vae(tmp_path / "weights" / "vae-oid.npz").parent, "weights-test")
    summary = annotate(JobConfig(input="gs://labels-test/raw/images", output="gs://labels-test/labels/run1",
                                 model=tiny_model_dir, tasks="segment,caption", classes="car", vae=vae_uri,
                                 max_new_tokens=short_budgets("segment,caption")))
    assert summary["vae"] == "gs://weights-test/vae-oid.npz"

    fs = gcs.filesystem()
    table = read_output("labels-test/labels/run1", filesystem=fs)
    assert_each_once(table, len(sizes) * 2)
    assert set(table.column("source_uri").to_pylist()) == set(uris)
    assert set(table.column("image_id").to_pylist()) == {image_id_for(u) for u in uris}
    broken = {u for u in uris if sizes[u.split("/raw/images/", 1)[1]] is None}
    for row in table.to_pylist():
        assert (row["status"] == "image_error") == (row["source_uri"] in broken)

    written = json.loads(fs.cat("labels-test/labels/run1/_summary.json"))
    assert written["rows"] == summary["rows"] == len(sizes) * 2
    assert summary["summary_uri"] == "gs://labels-test/labels/run1/_summary.json"


def test_a_partition_swap_on_gcs_replaces_the_old_objects(gcs, monkeypatch):
    """--partition's swap on an object store (a copy, not a rename): the old partition's objects go, the
    staged ones arrive under the partition's name, other partitions stay."""
    from fsspec.asyn import AsyncFileSystem
    from gcsfs.core import GCSFileSystem

    from pipelines.storage.output import OutputTarget, replace_partition

    # gcsfs first tries GCS's moveTo API, which the emulator answers 501: gcsfs retries that for 30 s, then
    # copies and deletes. Go straight to that copy and delete, as gcsfs ends up doing.
    monkeypatch.setattr(GCSFileSystem, "_mv_file", AsyncFileSystem._mv_file)

    fs = gcs.filesystem()
    gcs.create_bucket("swap-test")
    for path in ["labels/run_date=a/task=caption/old.parquet", "labels/run_date=b/task=caption/keep.parquet",
                 "labels/_staging/run_date=a.x/task=caption/new.parquet",
                 "labels/_staging/run_date=a.x/task=detect/new.parquet"]:
        fs.pipe(f"swap-test/{path}", b"x")
    target = OutputTarget(fs, "swap-test/labels", ("run_date", "a"))
    replace_partition(target, "swap-test/labels/_staging/run_date=a.x")
    fs.invalidate_cache()
    assert sorted(fs.find("swap-test/labels")) == [
        "swap-test/labels/run_date=a/task=caption/new.parquet",
        "swap-test/labels/run_date=a/task=detect/new.parquet",
        "swap-test/labels/run_date=b/task=caption/keep.parquet",
    ]


def test_sharded_exports_to_a_bucket_stand_alone_and_add_up(gcs, labelled):
    """jobs/export.py --shard-size into gs://: Label Studio task files and COCO in datumaro's layout, the
    images copied into the bucket beside their annotations."""
    from pipelines.review.export import export

    dataset, rows, _ = labelled
    gcs.create_bucket("exports-test")
    fs = gcs.filesystem()
    export("labelstudio", str(dataset), "gs://exports-test/ls", shard_size=3)
    task_files = sorted(fs.ls("exports-test/ls"))
    tasks = [task for path in task_files for task in json.loads(fs.cat(path))]
    assert len(task_files) == -(-len(tasks) // 3) and len(tasks) == len({row.image_id for row in rows})

    summary = export("coco", str(dataset), "gs://exports-test/coco", shard_size=3, coco_layout="datumaro")
    shards = sorted(fs.ls("exports-test/coco/annotations"))
    images = []
    for path in shards:
        subset = path.rsplit("/", 1)[1].removeprefix("instances_").removesuffix(".json")
        for image in json.loads(fs.cat(path))["images"]:
            images.append(image)
            assert fs.cat(f"exports-test/coco/images/{subset}/{image['file_name']}") == \
                open(image["source_uri"], "rb").read()
    placed = {row.image_id for row in rows if row.width is not None and row.task in ("detect", "segment")}
    assert {image["row_image_id"] for image in images} == placed and len(images) == len(placed)
    assert f"{len(placed)} images_copied, 0 images_not_copied" in summary

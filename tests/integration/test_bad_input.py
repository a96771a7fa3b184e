"""Awkward and hostile inputs, end to end on a real local Ray and a real tiny PaliGemma: every input x task
is exactly one row, annotated or `image_error` with its reason, and nothing of an input reaches the disk."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipelines.run import annotate
from pipelines.stages.read import image_id_for
from schemas.job import JobConfig
from tests.conftest import SHAPES_MODEL
from tests.images import encode, solid
from tests.integration.conftest import read_output, short_budgets
from tests.integration.corpus import BAD_INPUT_LIMIT, write_bad_input_images, write_hostile_shard
from tests.rows import assert_each_once

pytestmark = pytest.mark.integration
TASKS = ("detect", "caption")


def rows_by_input(table: pa.Table, prefix: str) -> dict[str, list[dict]]:
    """Rows grouped by source URI with `prefix` removed, after checking each (image_id, task) is one row."""
    assert_each_once(table)
    grouped: dict[str, list[dict]] = {}
    for row in table.to_pylist():
        assert row["source_uri"].startswith(prefix), row["source_uri"]
        grouped.setdefault(row["source_uri"][len(prefix):], []).append(row)
    return grouped


def check_outcomes(grouped: dict[str, list[dict]], expected: dict[str, tuple[int, int] | str]) -> None:
    assert set(grouped) == set(expected)
    for name, outcome in expected.items():
        rows = grouped[name]
        assert sorted(row["task"] for row in rows) == sorted(TASKS), name
        for row in rows:
            if isinstance(outcome, str):
                assert row["status"] == "image_error" and outcome in row["error"], (name, row["error"])
                assert row["width"] is None and row["raw_output"] is None
            else:
                assert row["status"] in ("ok", "invalid_output"), (name, row["status"], row["error"])
                assert (row["width"], row["height"]) == outcome, name


def write_upright_and_rotated_scene(root: Path) -> tuple[int, int]:
    """A shapes scene stored upright, and stored rotated with an EXIF tag saying how to display it upright;
    returns its displayed size."""
    # the last demo scene: two objects, both answered validly by the checkpoint
    displayed = Image.open(sorted((SHAPES_MODEL.parent / "shapes" / "images").glob("*.png"))[-1]).convert("RGB")
    displayed.save(root / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    displayed.transpose(Image.Transpose.ROTATE_90).save(root / "rotated.png", exif=exif.tobytes())
    return displayed.size


def test_each_awkward_image_file_gets_its_defined_outcome(tmp_path, ray_local):
    expected = write_bad_input_images(tmp_path / "in")
    expected["upright.png"] = expected["rotated.png"] = write_upright_and_rotated_scene(tmp_path / "in")
    # The trained shapes checkpoint, so that boxes mean something (see the rotated scene below).
    summary = annotate(JobConfig(input=str(tmp_path / "in"), output=str(tmp_path / "out"), model=str(SHAPES_MODEL),
                                 tasks=",".join(TASKS), classes="circle,square,triangle",
                                 max_image_pixels=BAD_INPUT_LIMIT))
    table = read_output(str(tmp_path / "out"))
    assert table.num_rows == summary["rows"] == len(expected) * len(TASKS)
    grouped = rows_by_input(table, f"file://{tmp_path / 'in'}/")
    check_outcomes(grouped, expected)
    # The model sees the same pixels whether the scene is stored upright or rotated with an EXIF tag, so the
    # boxes are the same, in the displayed frame (scores only to float noise: the two sit in other batches).
    upright, rotated = (next(row for row in grouped[name] if row["task"] == "detect")
                        for name in ("upright.png", "rotated.png"))
    assert upright["status"] == "ok" and upright["boxes"], upright["raw_output"]
    assert rotated["raw_output"] == upright["raw_output"]
    assert [{**box, "score": pytest.approx(box["score"], rel=1e-3)} for box in upright["boxes"]] == rotated["boxes"]
    # URIs with spaces and non-ASCII characters are kept as they are, and name their image
    assert grouped["non-ascii/café ☕ 画像.png"][0]["image_id"] == image_id_for(
        f"file://{tmp_path / 'in' / 'non-ascii' / 'café ☕ 画像.png'}")
    # identical bytes under two names are two inputs, each annotated once
    assert grouped["same-1.png"][0]["image_id"] != grouped["same-2.png"][0]["image_id"]


def test_tar_member_names_never_reach_the_disk(tmp_path, ray_local, tiny_model_dir):
    escape = f"escaped-{tmp_path.name}"
    shard = tmp_path / "deep" / "shards" / "shard-000.tar"
    expected = write_hostile_shard(shard, escape)
    annotate(JobConfig(input=str(shard.parent), output=str(tmp_path / "out"), model=tiny_model_dir,
                       tasks=",".join(TASKS), classes="car", max_new_tokens=short_budgets(",".join(TASKS))))
    grouped = rows_by_input(read_output(str(tmp_path / "out")), f"file://{shard}#")
    check_outcomes(grouped, expected)
    # where a tar extraction would have put them: next to the shard's parents, and /tmp
    for where in [shard.parent, *shard.parents[:4], Path("/tmp"), Path.cwd()]:
        assert not list(where.glob(f"{escape}*")), where


def test_parquet_null_bytes_and_repeated_images(tmp_path, ray_local, tiny_model_dir):
    image = encode(solid(7, 9), "PNG")
    pq.write_table(pa.table({"image": [image, None, image, b""]}), tmp_path / "in.parquet")
    annotate(JobConfig(input=str(tmp_path / "in.parquet"), output=str(tmp_path / "out"), model=tiny_model_dir,
                       tasks=",".join(TASKS), classes="car", max_new_tokens=short_budgets(",".join(TASKS))))
    table = read_output(str(tmp_path / "out"))
    grouped = rows_by_input(table, f"file://{tmp_path / 'in.parquet'}#row=")
    assert len(grouped) == 4 and table.num_rows == 8  # the repeated image is two inputs
    errors = sorted(rows[0]["error"] or "" for rows in grouped.values() if rows[0]["status"] == "image_error")
    assert len(errors) == 2 and all("no image data" in error for error in errors)
    annotated = [rows for rows in grouped.values() if rows[0]["status"] != "image_error"]
    assert len(annotated) == 2 and all((r["width"], r["height"]) == (7, 9) for rows in annotated for r in rows)


"""Stable ids and WebDataset image members (the Ray readers run in the integration tests)."""

import pytest

from pipelines.stages.read import image_id_for, image_member


def test_image_ids_are_stable_and_distinct():
    assert image_id_for("gs://b/a.jpg") == image_id_for("gs://b/a.jpg")
    assert image_id_for("gs://b/a.jpg") != image_id_for("gs://b/b.jpg")
    assert len(image_id_for("x")) == 16




@pytest.mark.parametrize(
    "members, expected",
    [
        (["json", "jpg", "png"], "jpg"),  # IMAGE_EXTENSIONS order
        (["txt", "JPG"], "JPG"),  # any case
        (["left.png", "cls"], "left.png"),  # the last extension of a multi-part one
        (["json", "txt"], None),  # no image member: the sample becomes image_error rows
        ([], None),
    ],
)
def test_the_image_member_of_a_webdataset_sample(members, expected):
    assert image_member(members) == expected

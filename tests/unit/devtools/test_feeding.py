"""The feeding benchmark's parts that need no Ray: photo stand-ins and the plain decode loop."""

import io

from PIL import Image

from pipelines.devtools.feeding import photo_like, plain_loop, write_inputs


def test_photo_stand_ins_have_the_size_and_format_asked():
    for fmt in ("JPEG", "PNG"):
        image = Image.open(io.BytesIO(photo_like(320, 200, seed=1, fmt=fmt)))
        assert image.format == fmt and image.size == (320, 200)
    assert photo_like(64, 48, seed=1) != photo_like(64, 48, seed=2)


def test_the_plain_loop_decodes_every_file(tmp_path):
    paths = write_inputs(tmp_path / "png", "png-0.3MP", 2)
    result = plain_loop(paths, 32)
    assert result["images"] == 2 and result["cpu_seconds"] > 0 and result["images_per_cpu_s"] > 0

"""Segmentation parsing on golden strings: boxes always, masks when the codewords allow."""

import numpy as np
import pytest

from pipelines.parse.segmentation import mask_codes, parse_segments
from schemas.columns import pack_mask_logits, unpack_mask_logits

CLASSES = ("car", "person")
CODES = tuple(range(0, 128, 8))  # 16 codewords


def loc(*values: int) -> str:
    return "".join(f"<loc{v:04d}>" for v in values)


def seg(*codes: int) -> str:
    return "".join(f"<seg{c:03d}>" for c in codes)


def reasons(problems: list[str]) -> list[str]:
    """The reasons of problem messages, without the excerpt of the entry they point at."""
    return [problem.split(": '")[0] for problem in problems]


def full(n: int) -> np.ndarray:
    """n decoded masks that cover their whole box."""
    return np.ones((n, 64, 64), np.float32)


def test_several_objects_get_boxes_and_masks_in_order():
    text = loc(0, 0, 512, 512) + seg(*CODES) + " car ; " + loc(512, 256, 1023, 768) + seg(*CODES[::-1]) + " person"
    assert mask_codes(text) == [CODES, CODES[::-1]]
    boxes, masks, problems = parse_segments(text, CLASSES, (100, 100), full(2))
    assert problems == []
    assert [b.label for b in boxes] == [m.label for m in masks] == ["car", "person"]
    car, person = (m.rle.to_binary() for m in masks)
    assert car.shape == (100, 100) and car[:50, :50].all() and car.sum() == 50 * 50
    assert person[50:100, 25:75].all() and person.sum() == 50 * 50
    assert masks[0].rle.size == [100, 100] and isinstance(masks[0].rle.counts, str)


def test_a_space_between_the_loc_and_seg_runs_is_tolerated():
    text = loc(0, 0, 512, 512) + " " + seg(*CODES) + " car"
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), full(1))
    assert problems == [] and len(boxes) == len(masks) == 1


def test_eight_codewords_keep_the_box_without_a_mask():
    text = loc(0, 0, 512, 512) + seg(*CODES[:8]) + " car ; " + loc(0, 0, 100, 100) + seg(*CODES) + " person"
    assert mask_codes(text) == [CODES]
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), full(1))
    assert [b.label for b in boxes] == ["car", "person"] and [m.label for m in masks] == ["person"]
    assert reasons(problems) == ["8 of 16 segmentation codewords, box kept without a mask"]
    assert problems[0].endswith("<seg056> car'")  # the excerpt keeps the label end of a long entry


@pytest.mark.parametrize(
    "entry, reason",
    [
        (loc(0, 0, 512, 512) + " car", "no segmentation codewords"),
        (loc(0, 0, 512, 512) + seg(*CODES[:15], 128) + " car", "segmentation codeword out of range 0..127"),
        (loc(0, 0, 512, 512) + seg(*CODES, 3) + " car", "17 of 16 segmentation codewords"),
    ],
)
def test_unusable_codewords_keep_the_box(entry, reason):
    boxes, masks, problems = parse_segments(entry, CLASSES, (64, 64), full(0))
    assert len(boxes) == 1 and masks == []
    assert reasons(problems) == [f"{reason}, box kept without a mask"]


def test_a_missing_label_drops_the_entry_but_keeps_the_mask_order():
    # The first entry's codewords were decoded too, so the second entry must take the second mask.
    text = loc(0, 0, 512, 512) + seg(*CODES) + " ; " + loc(0, 0, 1023, 1023) + seg(*CODES) + " person"
    logits = np.stack([np.ones((64, 64)), -np.ones((64, 64))]).astype(np.float32)
    logits[1, :32] = 1  # second mask: top half
    boxes, masks, problems = parse_segments(text, CLASSES, (10, 20), logits)
    assert [b.label for b in boxes] == ["person"]
    assert reasons(problems) == ["missing label, and 2 classes were requested"]
    pixels = masks[0].rle.to_binary()
    assert pixels.shape == (20, 10) and pixels[:10].all() and not pixels[10:].any()


def test_non_square_images_place_masks_in_original_pixels():
    # y before x: rows 256..768 of 1024 bins on a 40-high image, columns 0..512 on a 300-wide one
    text = loc(256, 0, 768, 512) + seg(*CODES) + " car"
    logits = -np.ones((1, 64, 64), np.float32)
    logits[0, :, :32] = 1  # left half of the box
    boxes, masks, problems = parse_segments(text, CLASSES, (300, 40), logits)
    (box,), (mask,) = boxes, masks
    assert problems == []
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == (0, 10, 150, 30)
    pixels = mask.rle.to_binary()
    assert mask.rle.size == [40, 300]
    assert np.argwhere(pixels).min(0).tolist() == [10, 0] and np.argwhere(pixels).max(0).tolist() == [29, 74]


def test_an_empty_mask_keeps_the_box():
    text = loc(0, 0, 512, 512) + seg(*CODES) + " car"
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), -full(1))
    assert len(boxes) == 1 and masks == []
    assert reasons(problems) == ["mask is empty, box kept without a mask"]


def test_unrequested_labels_and_bad_boxes_are_reported():
    text = loc(0, 0, 512, 512) + seg(*CODES) + " bus ; " + loc(500, 0, 400, 512) + seg(*CODES) + " car"
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), full(2))
    assert boxes == [] and masks == []
    assert problems[0].startswith("unknown label 'bus'") and problems[1].startswith("empty or inverted box")


def test_masks_that_do_not_match_the_codeword_sets_are_not_trusted():
    text = loc(0, 0, 512, 512) + seg(*CODES) + " car ; " + loc(0, 0, 512, 512) + seg(*CODES) + " person"
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), full(1))
    assert [b.label for b in boxes] == ["car", "person"] and masks == []
    assert problems == ["1 decoded masks for 2 codeword sets, no mask kept"]


def test_a_loc_after_the_codewords_is_not_part_of_the_box():
    # locs come first, then codewords: anything out of that order stays in the label
    text = loc(0) + seg(1) + loc(0, 512, 512) + seg(*CODES[:15]) + " car"
    assert mask_codes(text) == []
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), full(0))
    assert boxes == [] and masks == [] and reasons(problems) == ["1 location tokens, expected 4"]


def test_a_box_under_a_pixel_gets_no_mask():
    text = loc(0, 0, 1, 1) + seg(*CODES) + " car"  # 1/1024 of a 64-pixel image
    boxes, masks, problems = parse_segments(text, CLASSES, (64, 64), full(1))
    assert len(boxes) == 1 and masks == []
    assert reasons(problems) == ["box covers no whole pixel, box kept without a mask"]


def test_mask_logits_survive_transport():
    logits = np.random.default_rng(0).standard_normal((3, 64, 64)).astype(np.float32)
    np.testing.assert_array_equal(unpack_mask_logits(pack_mask_logits(logits)), logits)
    assert pack_mask_logits(np.zeros((0, 64, 64))) == b"" and unpack_mask_logits(b"").shape == (0, 64, 64)


# A real PaliGemma 2 mix 448 answer to `segment cow` on a 400x400 image: no label (published in the
# notebook VLMs/paligemma_2_mix.ipynb of github.com/JoeJoe1313/LLMs-Journey).
REAL_UNLABELLED = ("<loc0415><loc0520><loc0890><loc1023><seg122><seg055><seg061><seg055><seg104><seg009><seg096>"
                   "<seg083><seg103><seg041><seg103><seg019><seg100><seg084><seg091><seg045>")


def test_the_real_unlabelled_answer_takes_the_one_requested_class():
    assert mask_codes(REAL_UNLABELLED) == [(122, 55, 61, 55, 104, 9, 96, 83, 103, 41, 103, 19, 100, 84, 91, 45)]
    boxes, masks, problems = parse_segments(REAL_UNLABELLED, ("cow",), (400, 400), full(1))
    assert problems == []
    (box,), (mask,) = boxes, masks
    assert box.label == mask.label == "cow"
    assert (box.x_min, box.y_min, box.x_max, box.y_max) == pytest.approx((203.125, 162.109375, 399.609375, 347.65625))
    assert mask.rle.size == [400, 400] and mask.rle.to_binary().any()


def test_with_several_classes_an_unlabelled_entry_is_refused():
    boxes, masks, problems = parse_segments(REAL_UNLABELLED, ("cow", "dog"), (400, 400), full(1))
    assert boxes == [] and masks == [] and reasons(problems) == ["missing label, and 2 classes were requested"]


@pytest.mark.parametrize("classes, kept, reason", [
    # one class: the box stands, the cut codewords give no mask
    (("cow",), 1, "4 of 16 segmentation codewords, box kept without a mask"),
    # several: nothing names the box, and the codewords say the answer was cut
    (("cow", "dog"), 0, "4 of 16 segmentation codewords, and no label"),
])
def test_an_answer_cut_inside_its_codewords_says_how_many_it_has(classes, kept, reason):
    cut = REAL_UNLABELLED[:REAL_UNLABELLED.index("<seg104>")]  # 4 locations, 4 codewords
    boxes, masks, problems = parse_segments(cut, classes, (400, 400), full(0))
    assert len(boxes) == kept and masks == [] and reasons(problems) == [reason]

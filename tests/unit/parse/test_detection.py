"""Detection parsing on golden strings in PaliGemma's real output format."""

import pytest

from pipelines.parse.detection import parse_detections
from pipelines.parse.entries import split_entries

CLASSES = ("car", "person", "traffic light", "person's hat")


def loc(*values: int) -> str:
    return "".join(f"<loc{v:04d}>" for v in values)


@pytest.mark.parametrize(
    "text, image_wh, expected_boxes, expected_problems",
    [
        # empty answer: the model saw nothing, which is a valid, empty detection
        ("", (100, 100), [], []),
        # newline only
        ("\n", (100, 100), [], []),
        # the HF integration test's shoe example, on a 1000x1000 image
        (loc(51, 309, 708, 646) + " car", (1000, 1000),
         [("car", 301.7578125, 49.8046875, 630.859375, 691.40625)], []),
        # y comes before x: on a non-square 2048x1024 (w x h) image x scales by 2048, y by 1024
        (loc(256, 512, 768, 1024 - 1) + " person", (2048, 1024),
         [("person", 1024.0, 256.0, 2046.0, 768.0)], []),
        # several objects and a repeated label, ' ; '-separated
        (loc(0, 0, 512, 512) + " car ; " + loc(512, 512, 1023, 1023) + " car ; " + loc(10, 20, 30, 40) + " person",
         (1024, 1024), [("car", 0, 0, 512, 512), ("car", 512, 512, 1023, 1023), ("person", 20, 10, 40, 30)], []),
        # separators without spaces still split
        (loc(0, 0, 10, 10) + " car;" + loc(0, 0, 10, 10) + " person", (1024, 1024),
         [("car", 0, 0, 10, 10), ("person", 0, 0, 10, 10)], []),
        # a label with a space, and one with an apostrophe (supervision's regex cuts it at the ')
        (loc(0, 0, 10, 10) + " traffic light ; " + loc(0, 0, 10, 10) + " person's hat", (1024, 1024),
         [("traffic light", 0, 0, 10, 10), ("person's hat", 0, 0, 10, 10)], []),
        # label matching ignores case and repeated spaces, and reports the requested spelling
        (loc(0, 0, 10, 10) + " Traffic   Light", (1024, 1024), [("traffic light", 0, 0, 10, 10)], []),
        # a space between the locs is tolerated
        ("<loc0000> <loc0000><loc0010> <loc0010> car", (1024, 1024), [("car", 0, 0, 10, 10)], []),
        # truncated run: 3 locs is invalid, and the valid neighbour is kept
        (loc(0, 0, 10) + " car ; " + loc(0, 0, 10, 10) + " person", (1024, 1024),
         [("person", 0, 0, 10, 10)], ["3 location tokens, expected 4"]),
        # five locs is invalid, not silently trimmed to four
        (loc(0, 0, 10, 10, 20) + " car", (1024, 1024), [], ["5 location tokens, expected 4"]),
        # inverted box (y_max < y_min) is invalid, not repaired
        (loc(500, 0, 100, 10) + " car", (1024, 1024), [], ["empty or inverted box"]),
        # zero-width box (x_max == x_min) is invalid
        (loc(0, 10, 100, 10) + " car", (1024, 1024), [], ["empty or inverted box"]),
        # 0 and 1023 are the extreme bins; the box stays inside the image
        (loc(0, 0, 1023, 1023) + " car", (640, 480), [("car", 0, 0, 639.375, 479.53125)], []),
        # four locs but no label, with several classes requested: the box cannot be named
        (loc(0, 0, 10, 10), (1024, 1024), [], ["missing label, and 4 classes were requested"]),
        # a label that was not asked for
        (loc(0, 0, 10, 10) + " dog", (1024, 1024), [], ["unknown label 'dog'"]),
        # text without any location tokens
        ("a car", (1024, 1024), [], ["0 location tokens, expected 4"]),
        # segmentation codewords after the locs are ignored by detect
        (loc(0, 0, 10, 10) + "".join(f"<seg{i:03d}>" for i in range(16)) + " car", (1024, 1024),
         [("car", 0, 0, 10, 10)], []),
        # a trailing separator produces no empty entry
        (loc(0, 0, 10, 10) + " car ; ", (1024, 1024), [("car", 0, 0, 10, 10)], []),
    ],
)
def test_parse_detections(text, image_wh, expected_boxes, expected_problems):
    boxes, problems = parse_detections(text, CLASSES, image_wh)
    assert [b.label for b in boxes] == [e[0] for e in expected_boxes]
    coords = [v for b in boxes for v in (b.x_min, b.y_min, b.x_max, b.y_max)]
    assert coords == pytest.approx([v for e in expected_boxes for v in e[1:]])
    assert len(problems) == len(expected_problems)
    for problem, expected in zip(problems, expected_problems):
        assert problem.startswith(expected)


def test_problem_quotes_a_bounded_excerpt_of_the_entry():
    text = loc(*([7] * 60)) + " car"
    (problem,) = parse_detections(text, CLASSES, (100, 100))[1]
    assert problem.startswith("60 location tokens")
    assert len(problem) < 150


def test_split_entries_reads_locs_segs_and_label():
    (entry,) = split_entries(loc(1, 2, 3, 4) + " <seg005><seg006> a label ")
    assert entry.locs == (1, 2, 3, 4)
    assert entry.segs == (5, 6)
    assert entry.label == "a label"


def test_tokens_after_the_label_stay_in_the_label():
    (entry,) = split_entries(loc(1, 2, 3, 4) + " car " + loc(5))
    assert entry.label == "car <loc0005>"


def test_with_one_class_an_unlabelled_entry_takes_it():
    # PaliGemma 2 mix and big_vision's referring targets answer with locations only
    boxes, problems = parse_detections(loc(0, 0, 512, 512) + " ; " + loc(512, 0, 1023, 512) + " car", ("car",),
                                       (1024, 1024))
    assert problems == [] and [b.label for b in boxes] == ["car", "car"]
    # a label still has to be the requested one
    assert parse_detections(loc(0, 0, 10, 10) + " dog", ("car",), (1024, 1024))[1][0].startswith("unknown label")

"""Splitting location answers into entries: tokens at the start of each piece, the label after, offsets kept."""

from pipelines.parse.entries import describe_entry, find_class, normalised_classes, split_entries


def test_entries_split_on_semicolons_with_locations_codewords_and_label():
    text = "<loc0100><loc0200><loc0300><loc0400> car ; <loc0001><loc0002><loc0003><loc0004><seg005><seg006> a dog"
    first, second = split_entries(text)
    assert (first.locs, first.segs, first.label) == ((100, 200, 300, 400), (), "car")
    assert (second.locs, second.segs, second.label) == ((1, 2, 3, 4), (5, 6), "a dog")
    assert text[slice(*first.span)] == first.text and text[slice(*second.span)] == second.text
    assert text[slice(*second.seg_span)] == "<seg005><seg006>"


def test_a_token_out_of_order_stays_in_the_label():
    (entry,) = split_entries("<loc0001><seg002><loc0003> car")
    assert entry.locs == (1,) and entry.segs == (2,) and entry.label == "<loc0003> car"


def test_empty_pieces_are_skipped():
    assert split_entries("") == [] and split_entries(" ; ;") == []


def test_labels_match_classes_ignoring_case_and_spacing_and_take_the_requested_spelling():
    classes = normalised_classes(("Traffic light", "car"))
    assert find_class("traffic   LIGHT", classes) == "Traffic light"
    assert find_class("bus", classes) is None


def test_a_problem_message_keeps_both_ends_of_a_long_entry():
    (entry,) = split_entries("<loc0001>" * 30 + " zebra")
    message = describe_entry("unknown label", entry)
    assert message.startswith("unknown label: '<loc0001>") and message.endswith(" zebra'") and "..." in message

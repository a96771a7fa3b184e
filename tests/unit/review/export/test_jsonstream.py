"""JSON arrays written one element at a time are valid JSON whatever the count."""

import io
import json

import pytest

from pipelines.review.export.jsonstream import JsonArrayWriter


@pytest.mark.parametrize("elements", [[], [{"a": 1}], [1, "two", {"three": [3]}]])
def test_any_number_of_elements_is_a_valid_array(elements):
    handle = io.StringIO()
    with JsonArrayWriter(handle) as writer:
        for element in elements:
            writer.write(element)
    assert json.loads(handle.getvalue()) == elements and writer.count == len(elements)

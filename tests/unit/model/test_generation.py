"""The engine-independent half of generation: answers from token ids, and failures isolated in halves."""

from pipelines.model.generation import run_in_halves


def test_run_in_halves_isolates_the_items_that_fail_alone():
    calls = []

    def run(items):
        calls.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [item.upper() for item in items]

    results = run_in_halves(run, ["a", "b", "bad", "c", "d"])
    assert results[:2] == ["A", "B"] and results[3:] == ["C", "D"]
    assert isinstance(results[2], ValueError)
    assert calls == [["a", "b", "bad", "c", "d"], ["a", "b"], ["bad", "c", "d"], ["bad"], ["c", "d"]]


def test_run_in_halves_shrinks_a_batch_until_it_fits():
    seen = []

    def run(items):  # memory for two items at a time
        if len(items) > 2:
            raise MemoryError("out of memory (injected)")
        return list(items)

    assert run_in_halves(run, list(range(7)), seen.append) == list(range(7))
    assert len(seen) == 3 and all(isinstance(err, MemoryError) for err in seen)  # 7 -> 3 + 4 -> 2 + 2

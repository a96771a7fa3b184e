"""The resume benchmark's parts, in this process: its synthetic earlier attempt is one the real resume check
reads as finished shards plus one in flight, and only the in-flight shard's ids are shared."""

from pipelines.devtools.resume_cost import SHARD_ROWS, driver_side, worker_side, write_earlier_attempt


def test_the_resume_check_shares_only_the_shard_in_flight(tmp_path):
    inputs, output = write_earlier_attempt(tmp_path, 2 * SHARD_ROWS)
    by_file = driver_side(str(inputs), str(output), by_file=True)
    every_id = driver_side(str(inputs), str(output), by_file=False)
    assert by_file["rows_before"] == every_id["rows_before"] == 2 * SHARD_ROWS + SHARD_ROWS // 2
    assert by_file["input_files_skipped"] == 2  # the finished shards are not read again
    assert by_file["ids_shared"] == SHARD_ROWS // 2  # only the half-written shard's
    assert every_id["ids_shared"] == 2 * SHARD_ROWS + SHARD_ROWS // 2
    assert worker_side(by_file["shared"])["rows_kept"] == 64  # a batch of images not written yet passes

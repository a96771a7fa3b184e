"""Files and filesystems, without Ray: fsspec plumbing, input listings, credential masking, and the
output dataset's layout (job record, resume state, partition swap, summary)."""

"""The Ray Data stages, in data-flow order: read -> resume -> decode -> generate -> label -> write.

Each module declares its `CONTRACT` (columns read and written, rows in and out: `contract.py`);
`pipelines/build.py` chains them. Importing this package imports nothing heavy."""

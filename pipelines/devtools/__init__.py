"""Development tools: synthetic shapes, the stand-in checkpoints and their training, benchmarks."""

"""The model stage's model: `checkpoint.py` reads a checkpoint's small files without torch (the driver's
checks); the rest is the torch side, on the model actors: loading PaliGemma, scoring its tokens, decoding
its masks."""

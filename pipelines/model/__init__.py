"""The torch side of the model stage: loading PaliGemma, scoring its tokens, decoding its masks."""

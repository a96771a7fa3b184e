"""Pure functions from PaliGemma's generated text to annotations. No Ray, no torch."""

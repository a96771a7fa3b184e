"""Reading a finished annotation dataset: evaluation, the HTML report, exports. No Ray, no torch."""

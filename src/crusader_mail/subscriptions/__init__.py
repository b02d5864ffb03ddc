"""The reader-facing subscription service shared by email and web."""

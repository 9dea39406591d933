"""Foreign layouts checked against the real frameworks (or a transcription of their equations)."""

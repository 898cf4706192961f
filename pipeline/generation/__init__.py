"""Jukebox generation: model presets, level-by-level sampling, FLAC output."""

"""Prompt sampling: the structured Jukebox conditioning and a caption for every clip."""

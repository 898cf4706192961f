"""Synthaudio: synthetic audio datasets from Jukebox, leak-checked against private reference voices."""

__version__ = "0.1.0"

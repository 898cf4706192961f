"""Immutable, versioned releases: Parquet + FLAC, manifest, dataset card, checksums."""

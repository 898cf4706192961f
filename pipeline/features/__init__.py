"""Per-clip audio features and quality flags."""

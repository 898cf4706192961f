"""Speaker-similarity leak check against a private reference set of real voices."""

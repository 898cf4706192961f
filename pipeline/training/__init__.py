"""Learning from the private corpus: corpus loading, the training loop, Jukebox objectives, the train stage."""

"""Content-adaptive filtering: per-sequence updates and the encoder's switch, NNR-coded."""

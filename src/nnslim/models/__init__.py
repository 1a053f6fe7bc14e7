"""CNN coding tools: filter architectures, training data from real encodes, training."""

"""Data: the sources (a kind of input -> the module that reads it), the built-in datasets, streamed inputs."""

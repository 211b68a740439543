"""The codec wing: integer tables, the entropy coder, the container, and a codec run's compress / decompress."""

"""The generation wing: latent priors (one file each, one registry line) and sample-quality metrics."""

"""Analysis: metrics in the paper's units beside PCA, the holes measure and probes, figures, TensorBoard."""

"""Training: the loop, hand-derived gradients, optimizers, precision, CUDA graphs, torchrun."""

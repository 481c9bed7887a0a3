"""Train β-VAEs with PyTorch Lightning and Hydra, and put them to use."""

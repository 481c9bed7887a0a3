"""Measuring and showing a trained VAE: likelihoods, representations, anomalies, pictures."""

"""Hydra configuration: where the YAML lives, and the schemas that validate it."""

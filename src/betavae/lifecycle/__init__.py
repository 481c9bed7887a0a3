"""A run's life: its directory, the plan of each invocation, checkpoints, stops, divergence.

Beside the Lightning layer, not inside it: the apps and `betavae.training` call this package;
it imports neither of them, nor the sweep reports. docs/architecture.md draws the states.
"""

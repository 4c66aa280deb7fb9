"""ECL: Effective Collaborative Learning for long-tailed recognition (Lightning + Hydra)."""

__version__ = "0.1.0"

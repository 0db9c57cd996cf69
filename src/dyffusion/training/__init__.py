"""Training: ``fit`` (orchestration over the methods table) and its Lightning glue."""

from dyffusion.training.fitting import fit

__all__ = ["fit"]

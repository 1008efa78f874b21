"""Training loops. Standard training lives here now; adversarial methods build on `fit`."""

from robustness.training.fit import fit

__all__ = ["fit"]

"""Adversarial-robustness audits of PyTorch image classifiers.

Import direction: this package never imports the service or the workers.
"""

__version__ = "0.1.0"

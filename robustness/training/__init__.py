"""Training: standard, FGSM-AT, PGD-AT, TRADES and defensive distillation from one spec.

`fit` is the loop, `methods` the per-batch objectives, `monitor` the per-epoch held-out
evaluation, and `from_spec` turns a spec into a checkpoint plus model card.
"""

from robustness.training.fit import fit
from robustness.training.from_spec import TrainingResult, save_training, train_from_spec
from robustness.training.spec import METHODS, TrainingSpec, parse_training_spec

__all__ = ["METHODS", "TrainingResult", "TrainingSpec", "fit", "parse_training_spec",
           "save_training", "train_from_spec"]

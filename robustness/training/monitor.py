"""What training watches every epoch on a held-out slice, and what it decides from it.

Clean, FGSM and PGD accuracy per epoch make two failures visible that the training loss hides:
catastrophic overfitting (Wong et al. 2020: FGSM-AT's PGD accuracy collapses within an epoch
while its FGSM accuracy stays high, because the model learnt to mask the one gradient step it
is trained against) and robust overfitting (Rice et al. 2020: robust accuracy peaks and then
falls while training loss keeps improving). The first stops training; the second is why the
checkpoint kept is the epoch with the best PGD accuracy, not the last.
"""

from __future__ import annotations

import time

import torch

from robustness.attacks import fgsm, pgd, threat_model


def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int, device,
             attack=None) -> float:
    correct = 0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size].to(device)
        yb = y[start:start + batch_size].to(device)
        if attack is not None:
            xb = attack(model, xb, yb)
        with torch.no_grad():
            correct += int((model(xb).argmax(1) == yb).sum())
    return correct / max(x.shape[0], 1)


MIN_COLLAPSE = 0.05  # an absolute fall smaller than this is noise on a held-out slice


def detect_collapse(history: list[dict], drop: float, gap: float,
                    masking_gap: float | None = None, warmup: float = 0.0) -> dict | None:
    """Catastrophic overfitting at the last epoch of `history`, or None.

    Two signatures. `fall`: PGD accuracy fell to at most (1 - `drop`) of its best earlier value
    (and by at least MIN_COLLAPSE) while FGSM accuracy stayed at least `gap` above PGD
    accuracy: the model still beats the single step it was trained against but no longer the
    multi-step attack; or FGSM accuracy fell by the same fraction with it (measured, training
    at ε=0.4 with a random start: FGSM 0.90 to 0.07 and PGD 0.85 to 0.003 at ε=0.3 in one
    epoch, as the training loss kept falling: the model beats the random-start step it is
    trained on and nothing else). The fall is relative so that a run which collapses before it
    was ever very robust (best 0.11, then 0.05, then 0.0) is caught as well as one that falls
    from 0.8.
    `masked`: the collapse happened inside the first epoch, so there is no fall to see, only
    FGSM accuracy at least `masking_gap` above PGD accuracy in the last two epochs while PGD
    accuracy did not rise (by MIN_COLLAPSE) between them. Measured: FGSM-AT without random
    start sits at FGSM 0.6-0.9, PGD 0.0 from epoch 1 on; but Wong et al.'s recipe also opens
    with gaps up to 0.62 on some seeds while PGD accuracy climbs (0.09, 0.21, then 0.72 and
    0.90 at epoch 10), and stopping those at epoch 2 threw away a robust model.
    Neither is judged on the `warmup` epochs of an ε ramp, which train at a smaller ε than the
    monitors attack with, so a wide gap or a wobble there is expected; but a fall after the
    ramp counts from the best epoch of the ramp too, since a collapse can come right after it
    (measured: PGD accuracy 0.68 at the end of a 2-epoch ramp, 0.0 one epoch later).
    """
    if len(history) < 2 or history[-1].get("pgd_accuracy") is None:
        return None
    now = history[-1]
    best = max(history[:-1], key=lambda h: h["pgd_accuracy"])
    fell = best["pgd_accuracy"] - now["pgd_accuracy"]
    found = {"epoch": now["epoch"], "pgd_accuracy": now["pgd_accuracy"],
             "fgsm_accuracy": now["fgsm_accuracy"], "best_epoch": best["epoch"],
             "best_pgd_accuracy": best["pgd_accuracy"]}
    masks_fgsm = now["fgsm_accuracy"] - now["pgd_accuracy"] >= gap
    lost_both = now["fgsm_accuracy"] <= (1 - drop) * best["fgsm_accuracy"]
    if (now["epoch"] > warmup and fell >= MIN_COLLAPSE and fell >= drop * best["pgd_accuracy"]
            and (masks_fgsm or lost_both)):
        return {"kind": "fall", **found}
    rising = now["pgd_accuracy"] - history[-2]["pgd_accuracy"] >= MIN_COLLAPSE
    if masking_gap is not None and history[-2]["epoch"] > warmup and not rising and all(
            h["fgsm_accuracy"] - h["pgd_accuracy"] >= masking_gap for h in history[-2:]):
        return {"kind": "masked", **found}
    return None


def describe_collapse(co: dict) -> str:
    """One line for logs and reports."""
    if co["kind"] == "masked":
        return (f"catastrophic overfitting since the first epoch (epoch {co['epoch']}: PGD "
                f"accuracy {co['pgd_accuracy']:.3f}, FGSM accuracy {co['fgsm_accuracy']:.3f}; "
                f"the model masks the single-step attack it is trained against)")
    return (f"catastrophic overfitting at epoch {co['epoch']}: PGD accuracy "
            f"{co['pgd_accuracy']:.3f} (best {co['best_pgd_accuracy']:.3f} at epoch "
            f"{co['best_epoch']}), FGSM accuracy {co['fgsm_accuracy']:.3f}")


class Monitor:
    """`on_epoch` hook of `fit`: evaluates, records history, keeps the best weights."""

    def __init__(self, model, x_val, y_val, *, validation, norm: str, epsilon: float | None,
                 seed: int, device, stop_on_collapse: bool = True, select_robust: bool = True,
                 watch_after: float = 0.0):
        """`watch_after`: epochs of ε warm-up, during which a gap between FGSM and PGD accuracy
        at the full ε is expected and is not taken for catastrophic overfitting by itself."""
        self.model, self.x, self.y = model, x_val, y_val
        self.v = validation
        self.norm, self.epsilon, self.seed, self.device = norm, epsilon, seed, device
        self.stop_on_collapse = stop_on_collapse
        self.watch_after = watch_after
        self.select_robust = select_robust and self.robust_possible(epsilon, x_val)
        self.history: list[dict] = []
        self.collapse: dict | None = None
        self.best_epoch: int | None = None
        self.best_score: tuple | None = None
        self.best_state: dict | None = None

    @staticmethod
    def robust_possible(epsilon, x_val) -> bool:
        return bool(epsilon) and x_val.shape[0] > 0

    @property
    def robust(self) -> bool:
        return self.robust_possible(self.epsilon, self.x)

    def _attacks(self):
        threat = threat_model(self.norm, self.epsilon)
        generator = torch.Generator().manual_seed(self.seed)  # same start points every epoch
        step = 2.5 * self.epsilon / self.v.steps
        return (lambda m, x, y: fgsm(m, x, y, threat),
                lambda m, x, y: pgd(m, x, y, threat, steps=self.v.steps, step_size=step,
                                    restarts=self.v.restarts, generator=generator))

    def evaluate(self) -> dict:
        was_training = self.model.training
        self.model.eval()
        out = {"clean_accuracy": None, "fgsm_accuracy": None, "pgd_accuracy": None}
        if self.x.shape[0]:
            args = (self.model, self.x, self.y, self.v.batch_size, self.device)
            out["clean_accuracy"] = accuracy(*args)
            if self.robust:
                attack_fgsm, attack_pgd = self._attacks()
                out["fgsm_accuracy"] = accuracy(*args, attack=attack_fgsm)
                out["pgd_accuracy"] = accuracy(*args, attack=attack_pgd)
        self.model.train(was_training)
        return out

    def __call__(self, epoch: int, stats: dict) -> bool:
        started = time.perf_counter()
        entry = {"epoch": epoch + 1, "loss": stats["loss"], "lr": stats["lr"],
                 "train_seconds": stats["seconds"], **self.evaluate()}
        entry["monitor_seconds"] = time.perf_counter() - started
        self.history.append(entry)
        score = (entry["pgd_accuracy"] if self.select_robust else entry["clean_accuracy"],
                 entry["clean_accuracy"])
        if score[0] is None or self.best_score is None or score > self.best_score:
            self.best_score, self.best_epoch = score, entry["epoch"]
            self.best_state = {k: v.detach().clone()
                               for k, v in self.model.state_dict().items()}
        if self.robust and self.collapse is None:
            self.collapse = detect_collapse(self.history, self.v.collapse_drop,
                                            self.v.collapse_gap, self.v.masking_gap,
                                            warmup=self.watch_after)
            entry["catastrophic_overfitting"] = self.collapse is not None
            return self.collapse is not None and self.stop_on_collapse
        return False

"""Attack cost as ratios, measured in one run: against the compute floor (k forward+backward
passes w.r.t. the input for a k-step attack) and against torchattacks on the same model and
batch.

    .venv/bin/python bench/attacks_vs_floor.py [--batch 256] [--steps 40] [--repeats 3]

The model is madry_mnist on 1×28×28 inputs; its weights do not change the cost, so they are
random, and the labels are its own predictions. Each figure is the median of `repeats` runs.
torchattacks' CW stops early when its loss stops falling, ours never does (it keeps
shrinking the norm), so the CW row compares a full run with a possibly shortened one.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustness.attacks import LinfBall, carlini_wagner_l2, pgd
from robustness.models import Classifier, ModelMetadata, build_model


def median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def floor(model, x, y, passes: int):
    for _ in range(passes):
        xi = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xi), y)
        torch.autograd.grad(loss, xi)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = Classifier(build_model("madry_mnist", 10, (1, 28, 28)),
                       ModelMetadata(num_classes=10, input_shape=[1, 28, 28]))
    model.eval().requires_grad_(False)
    x = torch.rand(args.batch, 1, 28, 28)
    # Labels = the model's own predictions, so every example starts correctly classified and
    # no attack can skip work on already-misclassified ones.
    with torch.no_grad():
        y = model(x).argmax(1)
    k = args.steps
    rows = []

    t_floor = median_seconds(lambda: floor(model, x, y, k), args.repeats)
    t_ours = median_seconds(lambda: pgd(model, x, y, LinfBall(0.3), steps=k, step_size=0.01),
                            args.repeats)
    rows.append((f"PGD-{k} L∞", t_floor, t_ours))

    cw_steps = 100
    t_floor_cw = median_seconds(lambda: floor(model, x, y, cw_steps), args.repeats)
    t_cw = median_seconds(lambda: carlini_wagner_l2(model, x, y, steps=cw_steps,
                                                    binary_search_steps=1), args.repeats)
    rows.append((f"CW-L2 {cw_steps} steps", t_floor_cw, t_cw))

    peers = {}
    try:
        import torchattacks
        peers[rows[0][0]] = median_seconds(
            lambda: torchattacks.PGD(model, eps=0.3, alpha=0.01, steps=k)(x, y), args.repeats)
        peers[rows[1][0]] = median_seconds(
            lambda: torchattacks.CW(model, c=1, steps=cw_steps, lr=0.01)(x, y), args.repeats)
    except ImportError:
        pass

    print(f"batch {args.batch}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print("| attack | floor (s) | ours (s) | ours / floor | torchattacks (s) | ours / torchattacks |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, t_f, t_o in rows:
        peer = peers.get(name)
        print(f"| {name} | {t_f:.2f} | {t_o:.2f} | {t_o / t_f:.2f} | "
              f"{'-' if peer is None else f'{peer:.2f}'} | "
              f"{'-' if peer is None else f'{t_o / peer:.2f}'} |")


if __name__ == "__main__":
    main()

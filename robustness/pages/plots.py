"""The report pages' plots, drawn with matplotlib and inlined as SVG data URIs: one file that
can be mailed or archived, text drawn as paths (no fonts needed where it is opened), and an
image cannot run script whatever a user named a model or a class.

Each plot function returns a `Plot` (the URI and its alt text) or None when the report has
nothing to draw. Series differ by marker and line style as well as colour, so colour is never
the only thing that tells them apart.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure

# The SVG's element ids come from a hash salted with this (random when unset): the same report
# then draws the same page, byte for byte.
if matplotlib.rcParams["svg.hashsalt"] is None:
    matplotlib.rcParams["svg.hashsalt"] = "robustness-report"

MARKERS = ["o", "s", "^", "D", "v", "P", "X", "*", "<", ">"]
STYLES = ["-", "--", "-.", ":"]
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
          "#7f7f7f", "#bcbd22", "#17becf"]


@dataclass(frozen=True)
class Plot:
    uri: str
    alt: str


def text(value) -> str:
    """A user's string as matplotlib text: `$` would start math mode (and a parse error)."""
    return str(value).replace("$", r"\$")


def to_uri(fig: Figure) -> str:
    buffer = io.BytesIO()
    # No date (and a fixed hash salt, above): the same report draws the same bytes.
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


def figure(n_panels: int = 1, *, width: float = 6.4, height: float = 3.6) -> tuple:
    fig = Figure(figsize=(width * n_panels, height), layout="constrained")
    axes = fig.subplots(1, n_panels, squeeze=False)[0]
    return fig, list(axes)


def style(i: int) -> dict:
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": STYLES[(i // len(COLORS)) % len(STYLES)]}


def percent_axis(ax, label: str) -> None:
    ax.set_ylim(-0.02, 1.02)
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_ylabel(label)
    ax.grid(True, alpha=0.3)


def lines(panels: list[tuple[str, list[tuple[str, list[tuple[float, float]], dict]]]], *,
          y_label: str, x_label: str = "ε", alt: str, hlines=()) -> Plot | None:
    """One panel per (title, series); each series is (name, [(x, y)], extra style). `hlines`
    are (y, name) reference lines drawn in every panel."""
    panels = [(t, s) for t, s in panels if any(pts for _, pts, _ in s)]
    if not panels:
        return None
    fig, axes = figure(len(panels))
    for ax, (title, series) in zip(axes, panels):
        for i, (name, pts, extra) in enumerate(series):
            if pts:  # (a norm with one attack has no worst case over attacks)
                xs, ys = zip(*sorted(pts))
                ax.plot(xs, ys, label=text(name), **{**style(i), **extra})
        for j, (y, name) in enumerate(hlines):
            ax.axhline(y, color="#555", linestyle=":", linewidth=1.2, label=text(name))
        percent_axis(ax, y_label)
        ax.set_xlabel(text(x_label))
        ax.set_title(text(title), fontsize=10)
        ax.legend(fontsize=8, loc="best")
    return Plot(to_uri(fig), alt)


def boxes(panels: list[tuple[str, list[tuple[float, list[float]]]]], *, thresholds: list[float],
          alt: str) -> Plot | None:
    """Per panel, one box per ε of the confidences in its list (whiskers at the 5th and 95th
    percentiles, no outlier points: a 10,000-example audit draws as small as a 100-example
    one), the count above each box, and the thresholds as labelled horizontal lines."""
    panels = [(t, groups) for t, groups in panels if any(v for _, v in groups)]
    if not panels:
        return None
    fig, axes = figure(len(panels))
    for ax, (title, groups) in zip(axes, panels):
        groups = [(e, v) for e, v in groups if v]
        positions = list(range(len(groups)))
        ax.boxplot([v for _, v in groups], positions=positions, whis=(5, 95),
                   showfliers=False, widths=0.5, medianprops={"color": "#d62728"})
        for p, (_, v) in zip(positions, groups):
            ax.annotate(f"n={len(v)}", (p, 1.0), textcoords="offset points", xytext=(0, 4),
                        ha="center", fontsize=8)
        for j, tau in enumerate(thresholds):
            ax.axhline(tau, color="#555", linestyle=STYLES[(j + 1) % len(STYLES)],
                       linewidth=1, label=f"silent-error threshold τ={tau:g}")
        ax.set_xticks(positions, [f"{e:g}" for e, _ in groups])
        ax.set_xlabel("ε")
        percent_axis(ax, "confidence of the wrong class")
        ax.set_ylim(-0.02, 1.1)
        ax.set_title(text(title), fontsize=10)
        if thresholds:
            ax.legend(fontsize=8, loc="lower right")
    return Plot(to_uri(fig), alt)


def class_bars(names: list[str], clean: list[float], robust: list[float], *, robust_label: str,
               alt: str) -> Plot:
    """Clean and robust accuracy per class, side by side; the robust bars are hatched."""
    n = len(names)
    fig, (ax,) = figure(width=max(6.4, 0.45 * n + 2))
    xs = list(range(n))
    ax.bar([x - 0.2 for x in xs], clean, width=0.4, label="clean", color=COLORS[0])
    ax.bar([x + 0.2 for x in xs], robust, width=0.4, label=text(robust_label), color=COLORS[1],
           hatch="//", edgecolor="white")
    ax.set_xticks(xs, [text(s) for s in names], rotation=45 if n > 10 else 0, ha="right"
                  if n > 10 else "center", fontsize=8)
    percent_axis(ax, "accuracy")
    ax.set_xlabel("true class")
    ax.legend(fontsize=8)
    return Plot(to_uri(fig), alt)


def confusion(names: list[str], counts: list[list[int]], *, title: str, alt: str) -> Plot:
    """Rows: the true class; columns: the class predicted under attack. Counts are written in
    the cells when there are few classes."""
    n = len(names)
    size = min(9.0, max(4.0, 0.45 * n + 1.5))
    fig, (ax,) = figure(width=size + 1, height=size)
    top = max((v for row in counts for v in row), default=0) or 1
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=top)
    if n <= 20:
        for i, row in enumerate(counts):
            for j, v in enumerate(row):
                if v:
                    ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                            color="white" if v > top / 2 else "black")
    ticks = [text(s) for s in names] if n <= 40 else None
    if ticks:
        ax.set_xticks(range(n), ticks, rotation=90, fontsize=7)
        ax.set_yticks(range(n), ticks, fontsize=7)
    ax.set_xlabel("predicted under attack")
    ax.set_ylabel("true class")
    ax.set_title(text(title), fontsize=10)
    fig.colorbar(image, ax=ax, shrink=0.8, label="examples")
    return Plot(to_uri(fig), alt)


def histograms(series: list[tuple[str, list[float]]], *, x_label: str, alt: str) -> Plot | None:
    """One step histogram per series, with its median as a vertical line."""
    series = [(name, v) for name, v in series if v]
    if not series:
        return None
    fig, (ax,) = figure()
    for i, (name, values) in enumerate(series):
        s = style(i)
        ax.hist(values, bins=30, histtype="step", linewidth=1.6, color=s["color"],
                linestyle=s["linestyle"], label=text(f"{name} (n={len(values)})"))
        median = sorted(values)[len(values) // 2]
        ax.axvline(median, color=s["color"], linestyle=":", linewidth=1.2,
                   label=text(f"{name} median {median:.3g}"))
    ax.set_xlabel(text(x_label))
    ax.set_ylabel("examples")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return Plot(to_uri(fig), alt)


def history(epochs: list[int], panels: list[tuple[str, list[tuple[str, list]]]], *,
            marks: list[tuple[int, str]], alt: str) -> Plot | None:
    """Training history: one panel per (y label, series), values per epoch (None: not
    measured), with vertical lines at the marked epochs, labelled in words."""
    if not epochs:
        return None
    fig, axes = figure(len(panels))
    for ax, (y_label, series) in zip(axes, panels):
        for i, (name, values) in enumerate(series):
            pts = [(e, v) for e, v in zip(epochs, values) if v is not None]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, label=text(name), **style(i))
        if "accuracy" in y_label:
            percent_axis(ax, y_label)
        else:
            ax.set_ylabel(text(y_label))
            ax.grid(True, alpha=0.3)
        for j, (epoch, label) in enumerate(marks):
            ax.axvline(epoch, color="#d62728" if "overfitting" in label else "#555",
                       linestyle="--" if "overfitting" in label else ":", linewidth=1.4,
                       label=text(label))
        ax.set_xlabel("epoch")
        ax.legend(fontsize=8)
    return Plot(to_uri(fig), alt)

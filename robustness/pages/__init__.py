"""Report pages: one self-contained HTML file per audit, comparison, training or
certification, rendered from jinja2 templates with autoescaping (every model name, class name
and label comes from a user) and plots inlined as images (robustness.pages.plots)."""

from __future__ import annotations

from functools import lru_cache

from jinja2 import Environment, PackageLoader, select_autoescape


def _pct(v, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}%"


def _num(v, digits: int | None = None) -> str:
    if v is None:
        return "–"
    return f"{v:g}" if digits is None else f"{v:.{digits}g}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(loader=PackageLoader("robustness.pages", "templates"),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      trim_blocks=True, lstrip_blocks=True)
    from robustness.pages.audit import norm_name

    env.filters.update(pct=_pct, num=_num, norm=norm_name)
    env.globals["zip"] = zip
    return env


def render(template: str, context: dict) -> str:
    return environment().get_template(template).render(**context)


def render_audit_page(report: dict, images=None, **options) -> str:
    """The audit page; `images` (robustness.pages.gallery.Images) feeds the gallery."""
    from robustness.pages.audit import audit_context

    return render("audit.html.j2", audit_context(report, images, **options))


def render_comparison_page(audits: list[tuple[str, dict]], tolerance: float = 0.01) -> str:
    """Two or more audits of the same examples, the first the baseline."""
    from robustness.pages.compare import comparison_context

    return render("compare.html.j2", comparison_context(audits, tolerance))


def render_training_page(card: dict, **options) -> str:
    from robustness.pages.training import training_context

    return render("training.html.j2", training_context(card, **options))


def render_certification_page(report: dict) -> str:
    from robustness.pages.certification import certification_context

    return render("certification.html.j2", certification_context(report))

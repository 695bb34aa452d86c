"""Markdown and number formatting shared by the study's report sections."""

from __future__ import annotations

__all__ = ["get", "fmt", "pct", "agg", "ci", "pm", "table", "figure", "pct_ci"]


def get(obj, *keys):
    for key in keys:
        if not isinstance(obj, dict) or obj.get(key) is None:
            return None
        obj = obj[key]
    return obj


def fmt(value, digits=3):
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def pct(value):
    return "n/a" if value is None else f"{100 * value:.1f}"


def agg(d, scale=1.0, digits=3):
    """"mean ± std" of an `over_seeds` dict ("mean" alone with one seed)."""
    if not d or d.get("mean") is None:
        return "n/a"
    show = (lambda v: f"{scale * v:.1f}") if scale != 1.0 else (lambda v: fmt(v, digits))
    return show(d["mean"]) if d.get("std") is None else f"{show(d['mean'])} ± {show(d['std'])}"


def ci(interval, scale=1.0):
    """" [low, high]" of an interval dict ("" without one)."""
    if not interval or interval.get("low") is None:
        return ""
    low, high = interval["low"], interval["high"]
    return f" [{scale * low:.1f}, {scale * high:.1f}]" if scale != 1.0 else \
        f" [{fmt(low)}, {fmt(high)}]"


def pm(d):
    if not d or d.get("mean") is None:
        return "n/a"
    return f"{fmt(d['mean'])} ± {fmt(d['std'])} (sem {fmt(d['sem'])}, n={d['n']})"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def figure(results, name, alt):
    path = results.get("figures", {}).get(name)
    return f"![{alt}]({path})" if path else f"*(figure {name} not drawn)*"


def pct_ci(interval):
    """A `bootstrap_ci` of a share, in percent with its interval."""
    if not interval or interval.get("estimate") is None:
        return "n/a"
    return pct(interval["estimate"]) + ci(interval, 100)

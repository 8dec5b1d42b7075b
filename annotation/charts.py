"""Server-side charts as inline SVG strings (no JavaScript, no chart library, nothing from a CDN).

Each chart is an accessible image: a `<title>` naming it, labelled axes, and a `<title>` tooltip on
every bar, cell and point giving its exact value. Pure functions with no Django imports; the view
marks the returned markup safe (every piece of text in it is escaped here).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

FONT = 12
TEXT = "#1d2330"
MUTED = "#667085"
GRID = "#e6e8ec"
LABEL_COLORS = {1: "#1f8a4c", 0: "#8a8f98", -1: "#c23a2b"}
# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
PALETTE = ("#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str


def _e(text: object) -> str:
    return escape(str(text), quote=True)


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.3g}"


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _nice_ticks(max_value: float, *, target: int = 5, integer: bool = False) -> list[float]:
    """Round tick values from 0 to at least `max_value` (1, 2, 2.5 or 5 times a power of ten apart).

    `integer` keeps steps whole (for counts).
    """
    if max_value <= 0:
        return [0.0, 1.0]
    if integer:
        max_value = max(max_value, 1)  # so that a whole step of 1 is always among the candidates
    magnitude = 10 ** math.floor(math.log10(max_value / target))
    candidates = (m * magnitude for m in (1, 2, 2.5, 5, 10))
    step = next(c for c in candidates if c * target >= max_value and (not integer or float(c).is_integer()))
    count = math.ceil(max_value / step - 1e-9)
    return [round(i * step, 10) for i in range(count + 1)]


def _svg(title: str, width: float, height: float, body: list[str], css_class: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {css_class}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'width="100%" style="max-width:{width:.0f}px" role="img" font-size="{FONT}" fill="{TEXT}">'
        f"<title>{_e(title)}</title>" + "".join(body) + "</svg>"
    )


def _ink(background: str) -> str:
    """Dark text on light fills, white on dark ones (#rrggbb)."""
    r, g, b = (int(background[i : i + 2], 16) for i in (1, 3, 5))
    return TEXT if 0.299 * r + 0.587 * g + 0.114 * b > 160 else "#fff"


def _legend(series: Sequence[tuple[str, str]], x: float, y: float) -> list[str]:
    parts = []
    for name, color in series:
        parts.append(f'<rect x="{x:.1f}" y="{y - 10:.1f}" width="12" height="12" rx="2" fill="{color}"/>')
        parts.append(f'<text x="{x + 16:.1f}" y="{y:.1f}">{_e(name)}</text>')
        x += 28 + 7 * len(name)
    return parts


def _x_axis(ticks: list[float], x0: float, scale: float, top: float, bottom: float, label: str,
            tick_text: Callable[[float], str], center: float) -> list[str]:
    parts = []
    for tick in ticks:
        x = x0 + tick * scale
        parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top:.1f}" y2="{bottom:.1f}" stroke="{GRID}"/>')
        parts.append(f'<text x="{x:.1f}" y="{bottom + 15:.1f}" text-anchor="middle" fill="{MUTED}">{_e(tick_text(tick))}</text>')
    parts.append(f'<text x="{center:.1f}" y="{bottom + 33:.1f}" text-anchor="middle">{_e(label)}</text>')
    return parts


def bar_chart(*, title: str, categories: Sequence[str], series: Sequence[Series], axis_label: str,
              value_text: Callable[[float], str] = _fmt, tick_text: Callable[[float], str] = _fmt,
              max_value: float | None = None, width: int = 480) -> str:
    """Horizontal bars, grouped by category when there are several series; values must be >= 0."""
    bar, gap = 16, 12
    left = min(160, max(60, 7 * max((len(c) for c in categories), default=4) + 14))
    right = 56
    top = 28 if len(series) > 1 else 8
    group = bar * len(series) + gap
    plot_height = group * max(len(categories), 1)
    height = top + plot_height + 44
    values = [v for s in series for v in s.values if v is not None]
    ticks = _nice_ticks(max_value if max_value is not None else max(values, default=0))
    scale = (width - left - right) / ticks[-1]
    body = _legend([(s.name, s.color) for s in series], left, 16) if len(series) > 1 else []
    body += _x_axis(ticks, left, scale, top, top + plot_height, axis_label, tick_text, left + (width - left - right) / 2)
    for row, category in enumerate(categories):
        y = top + row * group + gap / 2
        body.append(
            f'<text x="{left - 8}" y="{y + group / 2 - gap / 2 + 4:.1f}" text-anchor="end">'
            f"<title>{_e(category)}</title>{_e(_short(category, 22))}</text>"
        )
        for index, one in enumerate(series):
            value = one.values[row]
            by = y + index * bar
            name = f"{category}: {one.name}" if len(series) > 1 else category
            if value is None:
                body.append(f'<text x="{left + 4}" y="{by + bar - 4:.1f}" fill="{MUTED}"><title>{_e(name)}: no data</title>n/a</text>')
                continue
            bar_width = value * scale
            body.append(
                f'<rect x="{left}" y="{by + 1:.1f}" width="{bar_width:.1f}" height="{bar - 2}" fill="{one.color}">'
                f"<title>{_e(name)}: {_e(value_text(value))}</title></rect>"
            )
            body.append(f'<text x="{left + bar_width + 4:.1f}" y="{by + bar - 4:.1f}">{_e(value_text(value))}</text>')
    return _svg(title, width, height, body, "bar-chart")


def share_text(share: float) -> str:
    """A share as a whole percent that never reads as done or empty when it is not: 0.3% is "<1%", 99.7% ">99%"."""
    if 0 < share < 0.01:
        return "<1%"
    if 0.99 < share < 1:
        return ">99%"
    return f"{share:.0%}"


def stacked_bars(*, title: str, categories: Sequence[str], segments: Sequence[Series], axis_label: str,
                 normalize: bool = True, width: int = 480, named: bool = False) -> str:
    """One horizontal bar per category split into segments; `normalize` draws shares of 100%.

    `named` writes each segment's name beside its share ("99% not started"), and the first
    segment's share after the bar too, so a share never reads as progress it is not.
    """
    bar, gap = 22, 12
    left = min(160, max(60, 7 * max((len(c) for c in categories), default=4) + 14))
    right = 56 + (8 + 7 * len(segments[0].name) if named and segments else 0)
    top = 28
    plot_height = (bar + gap) * max(len(categories), 1)
    height = top + plot_height + 44
    totals = [sum(s.values[row] or 0 for s in segments) for row in range(len(categories))]
    ticks = [0, 0.25, 0.5, 0.75, 1.0] if normalize else _nice_ticks(max(totals, default=0))
    scale = (width - left - right) / ticks[-1]
    tick_text = (lambda t: f"{t:.0%}") if normalize else _fmt
    body = _legend([(s.name, s.color) for s in segments], left, 16)
    body += _x_axis(ticks, left, scale, top, top + plot_height, axis_label, tick_text, left + (width - left - right) / 2)
    for row, category in enumerate(categories):
        y = top + row * (bar + gap) + gap / 2
        body.append(
            f'<text x="{left - 8}" y="{y + bar / 2 + 4:.1f}" text-anchor="end">'
            f"<title>{_e(category)}</title>{_e(_short(category, 22))}</text>"
        )
        x = float(left)
        for one in segments:
            count = one.values[row] or 0
            if not count:
                continue
            share = count / totals[row]
            segment = (share if normalize else count) * scale
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{segment:.1f}" height="{bar}" fill="{one.color}">'
                f"<title>{_e(category)} · {_e(one.name)}: {_fmt(count)} ({share:.0%})</title></rect>"
            )
            # The label goes inside its own segment, or nowhere: never over a neighbour.
            text = f"{share_text(share)} {one.name.lower()}" if named else share_text(share)
            if segment < 7 * len(text) + 8 and named:
                text = share_text(share)
            if segment >= 7 * len(text) + 8:
                body.append(
                    f'<text x="{x + segment / 2:.1f}" y="{y + bar / 2 + 4:.1f}" text-anchor="middle" fill="{_ink(one.color)}">{_e(text)}</text>'
                )
            x += segment
        end = f"n={_fmt(totals[row])}"
        if named and segments and totals[row]:
            end += f" · {share_text((segments[0].values[row] or 0) / totals[row])} {segments[0].name.lower()}"
        body.append(f'<text x="{x + 4:.1f}" y="{y + bar / 2 + 4:.1f}" fill="{MUTED}">{_e(end)}</text>')
    return _svg(title, width, height, body, "stacked-bars")


def _diverging(value: float) -> str:
    """-1 red, 0 white, +1 blue: the colour of a kappa value."""
    value = max(-1.0, min(1.0, value))
    end = (194, 58, 43) if value < 0 else (47, 91, 211)
    rgb = [round(255 + (c - 255) * abs(value)) for c in end]
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def heat_map(*, title: str, labels: Sequence[str], values: dict[tuple[int, int], float | None],
             notes: dict[tuple[int, int], str] | None = None, scale_label: str = "Cohen's kappa") -> str:
    """A square matrix of values in [-1, 1] (row i, column j), diagonal blank; `notes` add tooltip text."""
    cell = 64
    left = min(150, max(60, 7 * max((len(c) for c in labels), default=4) + 14))
    top = 10
    size = cell * len(labels)
    legend_top = top + size + 40
    width = max(left + size + 20, 330)
    height = legend_top + 44
    body = []
    for i, row_label in enumerate(labels):
        body.append(
            f'<text x="{left - 8}" y="{top + i * cell + cell / 2 + 4:.1f}" text-anchor="end">'
            f"<title>{_e(row_label)}</title>{_e(_short(row_label, 20))}</text>"
        )
        body.append(
            f'<text x="{left + i * cell + cell / 2:.1f}" y="{top + size + 16:.1f}" text-anchor="middle">'
            f"<title>{_e(row_label)}</title>{_e(_short(row_label, 9))}</text>"
        )
        for j in range(len(labels)):
            x, y = left + j * cell, top + i * cell
            value = values.get((i, j))
            note = (notes or {}).get((i, j), "")
            if i == j or value is None:
                body.append(f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="#f3f4f6" stroke="#fff"/>')
                body.append(
                    f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" fill="{MUTED}">'
                    f"<title>{_e(row_label)} × {_e(labels[j])}: no value {_e(note)}</title>{'—' if i == j else 'n/a'}</text>"
                )
                continue
            ink = _ink(_diverging(value))
            body.append(
                f'<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="{_diverging(value)}" stroke="#fff">'
                f"<title>{_e(row_label)} × {_e(labels[j])}: {value:.3f} {_e(note)}</title></rect>"
            )
            body.append(
                f'<text x="{x + cell / 2}" y="{y + cell / 2 + 4}" text-anchor="middle" fill="{ink}" '
                f'font-weight="600" class="cell-value" data-row="{i}" data-col="{j}">{value:.2f}</text>'
            )
    # Colour scale: 21 swatches from -1 to +1.
    swatch = 10
    for k in range(21):
        body.append(f'<rect x="{left + k * swatch}" y="{legend_top}" width="{swatch}" height="10" fill="{_diverging(-1 + k / 10)}"/>')
    for tick, text in ((-1, "−1"), (0, "0"), (1, "+1")):
        x = left + (tick + 1) * 10 * swatch + swatch / 2
        body.append(f'<text x="{x:.1f}" y="{legend_top + 24}" text-anchor="middle" fill="{MUTED}">{text}</text>')
    body.append(f'<text x="{left - 8}" y="{legend_top + 9}" text-anchor="end" fill="{MUTED}">{_e(scale_label)}</text>')
    return _svg(title, width, height, body, "heat-map")


def line_chart(*, title: str, x_labels: Sequence[str], series: Sequence[Series], y_label: str, x_label: str,
               integer: bool = False, width: int = 1000) -> str:
    """Lines over an ordinal x axis (for instance days), at most about ten x labels shown."""
    left, right, top, bottom = 56, 16, 30, 48
    height = 260
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None]
    ticks = _nice_ticks(max(values, default=0), integer=integer)
    y_scale = plot_h / ticks[-1]
    step = plot_w / max(len(x_labels) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        x = left + (i * step if len(x_labels) > 1 else plot_w / 2)
        return x, top + plot_h - v * y_scale

    body = _legend([(s.name, s.color) for s in series], left, 16)
    for tick in ticks:
        y = top + plot_h - tick * y_scale
        body.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        body.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{MUTED}">{_fmt(tick)}</text>')
    every = max(1, math.ceil(len(x_labels) / 10))
    for i, label in enumerate(x_labels):
        if i % every == 0 or i == len(x_labels) - 1:
            x, _ = xy(i, 0)
            body.append(f'<text x="{x:.1f}" y="{top + plot_h + 16}" text-anchor="middle" fill="{MUTED}">{_e(label)}</text>')
    body.append(f'<text x="{left + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle">{_e(x_label)}</text>')
    body.append(
        f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle">{_e(y_label)}</text>'
    )
    for one in series:
        points = [(i, v) for i, v in enumerate(one.values) if v is not None]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
        body.append(f'<polyline points="{path}" fill="none" stroke="{one.color}" stroke-width="2"/>')
        for i, v in points:
            x, y = xy(i, v)
            body.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" fill="{one.color}">'
                f"<title>{_e(one.name)}, {_e(x_labels[i])}: {_fmt(v)}</title></circle>"
            )
    return _svg(title, width, height, body, "line-chart")

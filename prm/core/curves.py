"""Training curves (loss, learning rate) as inline SVG: one <path> point per history entry, no JavaScript."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 640, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 28, 36


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def curve_svg(*, title: str, steps: Sequence[int], values: Sequence[float], total_steps: int,
              color: str, css_class: str) -> str:
    """A line over optimizer steps (x from 0 to total_steps, y from 0 to the largest value)."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    x_max = max(total_steps, max(steps, default=0), 1)
    y_max = max((v for v in values if v == v), default=0.0) or 1.0  # v == v skips NaN

    def x(step: float) -> float:
        return LEFT + plot_w * step / x_max

    def y(value: float) -> float:
        return TOP + plot_h * (1 - value / y_max)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve {escape(css_class)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" style="max-width:{WIDTH}px" role="img" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="{LEFT}" y="16" font-weight="600">{escape(title)}</text>',
    ]
    for fraction in (0, 0.5, 1):
        ty = y(fraction * y_max)
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}" stroke="#e6e8ec"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{ty + 4:.1f}" text-anchor="end" fill="#667085">{_fmt(fraction * y_max)}</text>')
    baseline = TOP + plot_h
    parts.append(f'<text x="{LEFT}" y="{baseline + 16}" fill="#667085">0</text>')
    parts.append(f'<text x="{LEFT + plot_w}" y="{baseline + 16}" text-anchor="end" fill="#667085">{x_max}</text>')
    parts.append(f'<text x="{LEFT + plot_w / 2:.0f}" y="{baseline + 30}" text-anchor="middle">optimizer step</text>')
    points = [(s, v) for s, v in zip(steps, values, strict=True) if v == v]
    if points:
        d = " ".join(f"{'M' if i == 0 else 'L'}{x(s):.1f},{y(v):.1f}" for i, (s, v) in enumerate(points))
        parts.append(f'<path class="line" d="{d}" fill="none" stroke="{color}" stroke-width="2" data-points="{len(points)}"/>')
        last_step, last_value = points[-1]
        parts.append(f'<circle cx="{x(last_step):.1f}" cy="{y(last_value):.1f}" r="3" fill="{color}">'
                     f"<title>step {last_step}: {_fmt(last_value)}</title></circle>")
    parts.append("</svg>")
    return "".join(parts)


def run_curves(history: Sequence[dict], *, total_steps: int) -> dict[str, str]:
    steps = [entry["step"] for entry in history]
    return {
        "loss": curve_svg(title="Training loss", steps=steps, values=[e["loss"] for e in history],
                          total_steps=total_steps, color="#0072b2", css_class="loss-curve"),
        "lr": curve_svg(title="Learning rate", steps=steps, values=[e["lr"] for e in history],
                        total_steps=total_steps, color="#e69f00", css_class="lr-curve"),
    }

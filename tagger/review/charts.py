"""Server-rendered SVG charts for the stats page (no JavaScript, no build step). Every label is escaped
here, so the SVG can be placed in the page as markup."""
from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["bar_chart", "line_chart"]

_COLORS = ("#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#bf3989")


def bar_chart(title: str, bars: Sequence[tuple[str, float | None]], *, max_value: float | None = None,
              fmt: str = "{:.0%}", width: int = 520) -> str:
    """Horizontal bars, one per (label, value); None is drawn as "n/a"."""
    top = max_value if max_value is not None else max([v for _, v in bars if v is not None] or [1.0]) or 1.0
    row, label_w, pad = 22, 200, 8
    height = pad * 2 + 24 + row * max(len(bars), 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'direction="ltr" aria-label="{escape(title)}">',
             f'<text x="{pad}" y="{pad + 14}" font-weight="bold">{escape(title)}</text>']
    if not bars:
        parts.append(f'<text x="{pad}" y="{pad + 40}" fill="#666">no data yet</text>')
    for i, (label, value) in enumerate(bars):
        y = pad + 24 + i * row
        parts.append(f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end">{escape(label)}</text>')
        if value is None:
            parts.append(f'<text x="{label_w}" y="{y + 15}" fill="#666">n/a</text>')
            continue
        w = max(1.0, (width - label_w - 70) * min(value / top, 1.0))
        parts.append(f'<rect x="{label_w}" y="{y + 3}" width="{w:.1f}" height="{row - 6}" fill="{_COLORS[0]}">'
                     f'<title>{escape(label)}: {escape(fmt.format(value))}</title></rect>')
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 15}">{escape(fmt.format(value))}</text>')
    parts.append("</svg>")
    return "".join(parts)


def line_chart(title: str, xs: Sequence[str], series: dict[str, Sequence[float | None]], *, width: int = 520,
               height: int = 220, y_max: float = 1.0) -> str:
    """One line per series over the categorical x axis (e.g. days), values in [0, y_max]."""
    left, right, top, bottom = 40, 10, 30, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'direction="ltr" aria-label="{escape(title)}">',
             f'<text x="8" y="18" font-weight="bold">{escape(title)}</text>',
             f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#999"/>',
             f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#999"/>',
             f'<text x="{left - 4}" y="{top + 4}" text-anchor="end" font-size="10">{y_max:.0%}</text>',
             f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end" font-size="10">0%</text>']
    if not xs:
        parts.append(f'<text x="{left + 8}" y="{top + 30}" fill="#666">no data yet</text>')

    def x_of(i: int) -> float:
        return left + (plot_w * (i + 0.5) / len(xs))

    for i, x in enumerate(xs):
        parts.append(f'<text x="{x_of(i):.1f}" y="{top + plot_h + 14}" text-anchor="middle" font-size="10">'
                     f'{escape(x)}</text>')
    for k, (name, values) in enumerate(series.items()):
        color = _COLORS[k % len(_COLORS)]
        points = [(x_of(i), top + plot_h * (1 - min(v / y_max, 1.0))) for i, v in enumerate(values) if v is not None]
        if len(points) > 1:
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="'
                         + " ".join(f"{x:.1f},{y:.1f}" for x, y in points) + '"/>')
        parts.extend(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>' for x, y in points)
        parts.append(f'<text x="{left + 4 + 150 * k}" y="{height - 6}" fill="{color}" font-size="11">'
                     f'{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)

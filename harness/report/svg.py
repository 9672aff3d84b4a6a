"""Small inline-SVG charts (bar chart, heat map, line chart) so an HTML report needs no plotting library and no
external file."""

from __future__ import annotations

import math
from html import escape

# Okabe-Ito, colour-blind safe, then a few more.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000", "#8C564B",
           "#7F7F7F")
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Roboto, sans-serif"'


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(low / step) * step
    ticks, t = [], start
    while t <= high + step * 1e-9:
        ticks.append(round(t, 10))
        t += step
    if ticks[-1] < high:
        ticks.append(round(t, 10))
    return ticks


def _tick_text(v: float) -> str:
    return f"{v:g}" if abs(v) >= 0.01 or v == 0 else f"{v:.0e}"


def _text_width(text: str, size: int = 11) -> float:
    return 0.6 * size * len(text)


def _legend(labels: list[str], x: float, y: float, width: float) -> tuple[list[str], float]:
    """Legend entries flowing left to right, wrapping at `width`; returns the parts and the height used."""
    parts, cx, cy = [], x, y
    for i, label in enumerate(labels):
        w = 18 + _text_width(label) + 14
        if cx + w > x + width and cx > x:
            cx, cy = x, cy + 18
        color = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{cx:.1f}" y="{cy - 9:.1f}" width="12" height="12" fill="{color}"/>'
                     f'<text x="{cx + 16:.1f}" y="{cy + 1:.1f}" font-size="11">{escape(label)}</text>')
        cx += w
    return parts, cy - y + 18


def bar_chart(categories: list[str], series: list[tuple[str, list[float | None]]], *, title: str,
              y_label: str) -> str:
    """Grouped bars: one group per category, one bar per series; negative values go below the zero line."""
    values = [v for _, vals in series for v in vals if v is not None]
    if not categories or not series or not values:
        return ""
    n = len(series)
    bar_w = 14 if n <= 4 else 10
    group_w = n * bar_w + 18
    left, top, plot_h = 56, 34, 220
    group_w = max(group_w, (480 - left - 20) / len(categories))  # few categories: spread them over the width
    width = max(480, left + group_w * len(categories) + 20)
    ticks = _nice_ticks(min(0.0, min(values)), max(0.0, max(values)))
    lo, hi = ticks[0], ticks[-1]

    def y(v: float) -> float:
        return top + plot_h * (hi - v) / (hi - lo)

    parts = [f'<text x="{left}" y="20" font-size="14" font-weight="600">{escape(title)}</text>']
    for t in ticks:
        parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(t):.1f}" y2="{y(t):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{y(t) + 4:.1f}" font-size="10" text-anchor="end">{_tick_text(t)}</text>')
    parts.append(f'<line x1="{left}" x2="{width - 10}" y1="{y(0):.1f}" y2="{y(0):.1f}" stroke="#444"/>')
    parts.append(f'<text transform="translate(14,{top + plot_h / 2:.0f}) rotate(-90)" font-size="11" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for ci, cat in enumerate(categories):
        gx = left + ci * group_w + (group_w - n * bar_w) / 2
        for si, (label, vals) in enumerate(series):
            v = vals[ci]
            if v is None:
                continue
            x0 = gx + si * bar_w
            y0, y1 = sorted((y(0), y(v)))
            parts.append(f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{bar_w - 2}" height="{max(y1 - y0, 0.5):.1f}" '
                         f'fill="{PALETTE[si % len(PALETTE)]}"><title>{escape(label)} · {escape(cat)}: '
                         f'{v:+.1f}</title></rect>')
        cx = gx + n * bar_w / 2
        parts.append(f'<text transform="translate({cx:.1f},{top + plot_h + 12}) rotate(-35)" font-size="10" '
                     f'text-anchor="end">{escape(cat)}</text>')
    legend, legend_h = _legend([s[0] for s in series], left, top + plot_h + 78, width - left - 10)
    height = top + plot_h + 78 + legend_h
    return _svg(width, height, parts + legend, title)


def _blend(t: float) -> str:
    lo, hi = (247, 251, 255), (8, 81, 156)
    return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(lo, hi, strict=True))


def heatmap(row_labels: list[str], col_labels: list[str], values: list[list[float | None]], *, title: str,
            note: str = "") -> str:
    """Cells coloured by their value within the column (light = the column's lowest, dark = its highest)."""
    if not row_labels or not col_labels:
        return ""
    cell_w, cell_h = 70, 28
    left = 12 + max(_text_width(r, 12) for r in row_labels)
    top = 40 + max(_text_width(c, 11) for c in col_labels) * 0.6
    width = max(left + cell_w * len(col_labels) + 20, 24 + _text_width(title, 14), 24 + _text_width(note, 10))
    height = top + cell_h * len(row_labels) + (34 if note else 16)
    parts = [f'<text x="12" y="20" font-size="14" font-weight="600">{escape(title)}</text>']
    for ci, col in enumerate(col_labels):
        cx = left + ci * cell_w + cell_w / 2
        parts.append(f'<text transform="translate({cx:.1f},{top - 6:.1f}) rotate(-35)" font-size="11">'
                     f'{escape(col)}</text>')
    for ci in range(len(col_labels)):
        column = [row[ci] for row in values if row[ci] is not None]
        lo, hi = (min(column), max(column)) if column else (0.0, 0.0)
        for ri, row in enumerate(values):
            v = row[ci]
            x, yy = left + ci * cell_w, top + ri * cell_h
            if v is None:
                parts.append(f'<rect x="{x}" y="{yy:.1f}" width="{cell_w}" height="{cell_h}" fill="#f2f2f2" '
                             f'stroke="#fff"/>')
                continue
            t = 0.5 if hi == lo else (v - lo) / (hi - lo)
            t = 0.15 + 0.75 * t
            fg = "#fff" if t > 0.55 else "#111"
            parts.append(f'<rect x="{x}" y="{yy:.1f}" width="{cell_w}" height="{cell_h}" fill="{_blend(t)}" '
                         f'stroke="#fff"><title>{escape(row_labels[ri])} · {escape(col_labels[ci])}: {v:.1f}'
                         f'</title></rect><text x="{x + cell_w / 2}" y="{yy + cell_h / 2 + 4:.1f}" font-size="11" '
                         f'text-anchor="middle" fill="{fg}">{v:.1f}</text>')
    for ri, label in enumerate(row_labels):
        parts.append(f'<text x="{left - 8:.1f}" y="{top + ri * cell_h + cell_h / 2 + 4:.1f}" font-size="12" '
                     f'text-anchor="end">{escape(label)}</text>')
    if note:
        parts.append(f'<text x="12" y="{height - 10:.1f}" font-size="10" fill="#555">{escape(note)}</text>')
    return _svg(width, height, parts, title)


def line_chart(series: list[tuple[str, list[tuple[float, float]]]], *, title: str, x_label: str,
               y_label: str) -> str:
    points = [p for _, pts in series for p in pts]
    if not points:
        return ""
    left, top, plot_w, plot_h = 60, 34, 560, 240
    xt = _nice_ticks(min(p[0] for p in points), max(p[0] for p in points))
    yt = _nice_ticks(min(p[1] for p in points), max(p[1] for p in points))
    width = left + plot_w + 20

    def sx(v: float) -> float:
        return left + plot_w * (v - xt[0]) / (xt[-1] - xt[0])

    def sy(v: float) -> float:
        return top + plot_h * (yt[-1] - v) / (yt[-1] - yt[0])

    parts = [f'<text x="{left}" y="20" font-size="14" font-weight="600">{escape(title)}</text>']
    for t in yt:
        parts.append(f'<line x1="{left}" x2="{left + plot_w}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" stroke="#e5e5e5"/>'
                     f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" font-size="10" text-anchor="end">{_tick_text(t)}'
                     f'</text>')
    for t in xt:
        parts.append(f'<text x="{sx(t):.1f}" y="{top + plot_h + 16}" font-size="10" text-anchor="middle">'
                     f'{_tick_text(t)}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="none" stroke="#444"/>')
    parts.append(f'<text x="{left + plot_w / 2}" y="{top + plot_h + 34}" font-size="11" text-anchor="middle">'
                 f'{escape(x_label)}</text>')
    parts.append(f'<text transform="translate(16,{top + plot_h / 2:.0f}) rotate(-90)" font-size="11" '
                 f'text-anchor="middle">{escape(y_label)}</text>')
    for i, (label, pts) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(v):.1f}" for x, v in pts)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8">'
                     f'<title>{escape(label)}</title></polyline>')
        if len(pts) == 1:
            parts.append(f'<circle cx="{sx(pts[0][0]):.1f}" cy="{sy(pts[0][1]):.1f}" r="3" fill="{color}"/>')
    legend, legend_h = _legend([s[0] for s in series], left, top + plot_h + 56, plot_w)
    return _svg(width, top + plot_h + 56 + legend_h, parts + legend, title)


def _svg(width: float, height: float, parts: list[str], title: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
            f'viewBox="0 0 {width:.0f} {height:.0f}" role="img" aria-label="{escape(title)}" {FONT}>'
            + "".join(parts) + "</svg>")

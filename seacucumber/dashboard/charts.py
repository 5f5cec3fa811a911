"""Charts as SVG written on the server: no JavaScript and nothing fetched, so the admin page
works offline and behind any Content-Security-Policy. Each bar and point carries a
``<title>`` (the browser's tooltip) with its exact figures.

Two kinds are enough: stacked bars (sends per hour by outcome) and a line against reference
levels (bounce and complaint rates against SES's review and pause levels). A chart library
would be larger than this module; the admin needs nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape

from django.utils.safestring import SafeString, mark_safe

from .data import Hour

#: outcome -> colour (colour-blind safe: Okabe-Ito)
COLOURS = {"sent": "#009E73", "bounced": "#E69F00", "complained": "#CC79A7",
           "failed": "#D55E00", "suppressed": "#56B4E9", "cancelled": "#0072B2",
           "queued": "#999999"}
WIDTH, HEIGHT, LEFT, BOTTOM, TOP = 760, 220, 52, 28, 14
#: text size in the chart's own units; the chart is drawn at its own width (narrower only
#: when the page is), so this is the size on screen: at least 11 px on a desktop page
FONT_SIZE = 12
LABEL_SPACE = 56  #: room a day's label ("11-24" at FONT_SIZE) takes, with a gap


def _nice_ceiling(value: float) -> float:
    """1, 2 or 5 times a power of ten, at least ``value`` (a readable axis maximum)."""
    if value <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    return next(f * power for f in (1, 2, 5, 10) if f * power >= value)


def _svg(label: str, body: list[str], klass: str) -> SafeString:
    return mark_safe(  # noqa: S308 - every text inside went through escape()
        f'<svg class="sc-chart {klass}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif" '
        f'font-size="{FONT_SIZE}">{"".join(body)}</svg>')


def _axis(maximum: float, unit: str = "") -> list[str]:
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" stroke="#888"/>',
             f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH}" y2="{HEIGHT - BOTTOM}" '
             'stroke="#888"/>']
    for share in (0, 0.5, 1):
        y = HEIGHT - BOTTOM - share * plot_h
        value = maximum * share
        text = f"{value:g}{unit}" if unit else f"{value:,.0f}"
        parts.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end" '
                     f'fill="#555">{escape(text)}</text>')
    return parts


def hourly_sends(hours: Sequence[Hour]) -> SafeString:
    """Stacked bars: sends queued per hour, coloured by outcome, with a legend."""
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    maximum = _nice_ceiling(max((h.total for h in hours), default=0))
    slot = plot_w / max(1, len(hours))
    body = _axis(maximum)
    for index, hour in enumerate(hours):
        x = LEFT + 1 + index * slot
        y = float(HEIGHT - BOTTOM)
        figures = ", ".join(f"{n} {name}" for name, n in hour.counts.items() if n) or "none"
        title = escape(f"{hour.start:%Y-%m-%d %H}:00 UTC: {figures}")
        bars = []
        for name, value in hour.counts.items():
            if not value:
                continue
            height = plot_h * value / maximum
            y -= height
            bars.append(f'<rect class="sc-bar sc-{name}" x="{x:.1f}" y="{y:.1f}" '
                        f'width="{max(1.0, slot - 2):.1f}" height="{height:.1f}" '
                        f'fill="{COLOURS[name]}"/>')
        body.append(f"<g><title>{title}</title>{''.join(bars)}</g>")
        if index % 6 == 0:
            body.append(f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" fill="#555">'
                        f'{hour.start:%d %H}h</text>')
    for index, (name, colour) in enumerate(COLOURS.items()):
        x = LEFT + 10 + index * 90
        body.append(f'<rect x="{x}" y="{TOP - 10}" width="10" height="10" fill="{colour}"/>'
                    f'<text x="{x + 14}" y="{TOP}" fill="#333">{name}</text>')
    return _svg("Sends per hour over the last 48 hours, by outcome", body, "sc-hourly")


def _day_labels(count: int, step: float) -> list[tuple[int, str]]:
    """Which of ``count`` days ``step`` apart get a label, and its anchor: every so many, far
    enough apart not to overlap (``LABEL_SPACE``), centred on their day; the last day always,
    ending at its dot so it is never cut off, with no other label too close to it."""
    if count == 0:
        return []
    every = max(1, math.ceil(LABEL_SPACE / step)) if step else 1
    last = count - 1
    chosen = [(index, "middle") for index in range(0, last, every)
              if (last - index) * step >= 1.5 * LABEL_SPACE]
    return [*chosen, (last, "end" if last else "start")]


def rate_line(label: str, points: Sequence[tuple[str, float | None]], review: float,
              pause: float) -> SafeString:
    """A rate per day (fractions) as a line and dots, against SES's review and pause
    levels drawn as dashed lines. Days without sends have no dot."""
    plot_w, plot_h = WIDTH - LEFT - 8, HEIGHT - TOP - BOTTOM
    highest = max((v for _, v in points if v is not None), default=0.0)
    maximum = _nice_ceiling(100 * max(highest, pause * 1.2)) / 100
    body = _axis(100 * maximum, "%")
    step = plot_w / max(1, len(points) - 1) if len(points) > 1 else 0
    for level, name, colour in ((review, "review", "#E69F00"), (pause, "pause", "#D55E00")):
        y = HEIGHT - BOTTOM - plot_h * level / maximum
        body.append(f'<line class="sc-level" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - 8}" '
                    f'y2="{y:.1f}" stroke="{colour}" stroke-dasharray="6 4"/>'
                    f'<text x="{WIDTH - 10}" y="{y - 3:.1f}" text-anchor="end" '
                    f'fill="{colour}">SES {name} {100 * level:g}%</text>')
    line: list[str] = []
    dots: list[str] = []
    for index, anchor in _day_labels(len(points), step):
        x = LEFT + 4 + index * step
        body.append(f'<text class="sc-day" x="{x:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                    f'text-anchor="{anchor}" fill="#555">{escape(points[index][0][5:])}</text>')
    for index, (day, value) in enumerate(points):
        x = LEFT + 4 + index * step
        if value is None:
            continue
        y = HEIGHT - BOTTOM - plot_h * min(value, maximum) / maximum
        line.append(f"{x:.1f},{y:.1f}")
        dots.append(f'<circle class="sc-point" cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#0072B2">'
                    f"<title>{escape(day)}: {100 * value:.3f}%</title></circle>")
    if len(line) > 1:
        body.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="#0072B2" '
                    'stroke-width="1.5"/>')
    body += dots
    return _svg(label, body, "sc-rate")

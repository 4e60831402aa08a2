"""Charts as inline SVG, rendered on the server (no JavaScript, nothing fetched from elsewhere)."""

from __future__ import annotations

from collections.abc import Sequence

from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from exchange.safe_text import visible

GRANTED = "#2e7d32"
DENIED = "#c62828"
BAR = "#417690"


def _svg(template: str, *args) -> SafeString:
    """``format_html`` with coordinates rounded to one decimal."""
    return format_html(template, *[round(a, 1) if isinstance(a, float) else a for a in args])


def _nice_max(value: int) -> int:
    """A round axis maximum at or above ``value``."""
    if value <= 5:
        return 5
    magnitude = 10 ** (len(str(value)) - 1)
    for step in (1, 2, 5, 10):
        if value <= step * magnitude:
            return step * magnitude
    return value


def stacked_days(days: Sequence, *, width: int = 760, height: int = 220, title: str) -> SafeString:
    """One stacked column per day: granted (bottom) and denied (top). ``days`` have
    ``day``, ``granted``, ``denied``."""
    left, bottom, top = 40, 30, 10
    plot_w, plot_h = width - left - 10, height - bottom - top
    top_value = _nice_max(max((d.granted + d.denied for d in days), default=0))
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.7, 1)
    parts = [
        _svg(
            '<svg xmlns="http://www.w3.org/2000/svg" class="rolegate-chart" role="img" viewBox="0 0 {} {}" '
            'width="100%" style="max-width:{}px" aria-label="{}">',
            width,
            height,
            width,
            title,
        ),
        _svg("<title>{}</title>", title),
    ]
    for fraction in (0, 0.5, 1):
        y = top + plot_h * (1 - fraction)
        parts.append(
            _svg(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" stroke="#ddd"/>'
                '<text x="{}" y="{}" font-size="10" text-anchor="end" fill="#666">{}</text>',
                left,
                width - 10,
                y,
                y,
                left - 4,
                y + 3,
                f"{top_value * fraction:g}",
            )
        )
    for i, d in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        g_h = plot_h * d.granted / top_value
        d_h = plot_h * d.denied / top_value
        label = f"{d.day.isoformat()}: {d.granted} granted, {d.denied} denied"
        parts.append(_svg('<g class="day" data-day="{}"><title>{}</title>', d.day.isoformat(), label))
        if d.granted:
            parts.append(
                _svg(
                    '<rect class="granted" x="{}" y="{}" width="{}" height="{}" fill="{}"/>',
                    x,
                    top + plot_h - g_h,
                    bar_w,
                    g_h,
                    GRANTED,
                )
            )
        if d.denied:
            parts.append(
                _svg(
                    '<rect class="denied" x="{}" y="{}" width="{}" height="{}" fill="{}"/>',
                    x,
                    top + plot_h - g_h - d_h,
                    bar_w,
                    d_h,
                    DENIED,
                )
            )
        parts.append(mark_safe("</g>"))
        last = len(days) - 1
        if (i % 7 == 0 and last - i >= 4) or i == last:
            parts.append(
                _svg(
                    '<text x="{}" y="{}" font-size="10" text-anchor="middle" fill="#666">{}</text>',
                    x + bar_w / 2,
                    height - 12,
                    d.day.strftime("%b %d"),
                )
            )
    parts.append(
        _svg(
            '<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="10">granted</text>'
            '<rect x="{}" y="{}" width="10" height="10" fill="{}"/><text x="{}" y="{}" font-size="10">denied</text>',
            left,
            height - 10,
            GRANTED,
            left + 14,
            height - 1,
            left + 70,
            height - 10,
            DENIED,
            left + 84,
            height - 1,
        )
    )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))  # noqa: S308 (every part is format_html-escaped)


def horizontal_bars(items: Sequence[tuple[str, int]], *, width: int = 520, title: str, color: str = BAR) -> SafeString:
    """One labelled bar per (label, value), longest first as given."""
    row_h, label_w = 22, 220
    height = max(len(items), 1) * row_h + 10
    top_value = max((value for _, value in items), default=0) or 1
    parts = [
        _svg(
            '<svg xmlns="http://www.w3.org/2000/svg" class="rolegate-chart" role="img" viewBox="0 0 {} {}" '
            'width="100%" style="max-width:{}px" aria-label="{}"><title>{}</title>',
            width,
            height,
            width,
            title,
            title,
        )
    ]
    if not items:
        parts.append(_svg('<text x="4" y="16" font-size="12" fill="#666">{}</text>', "Nothing yet."))
    for i, (raw_label, value) in enumerate(items):
        label = visible(raw_label)  # labels are claim text (projects): controls and bidi shown as escapes
        y = 5 + i * row_h
        bar = (width - label_w - 50) * value / top_value
        short = label if len(label) <= 34 else "…" + label[-33:]
        parts.append(
            _svg(
                '<g class="bar"><title>{}: {}</title>'
                '<text x="{}" y="{}" font-size="11" text-anchor="end">{}</text>'
                '<rect x="{}" y="{}" width="{}" height="{}" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11">{}</text></g>',
                label,
                value,
                label_w - 6,
                y + 14,
                short,
                label_w,
                y + 3,
                bar,
                row_h - 6,
                color,
                label_w + bar + 4,
                y + 14,
                value,
            )
        )
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(parts))  # noqa: S308 (every part is format_html-escaped)

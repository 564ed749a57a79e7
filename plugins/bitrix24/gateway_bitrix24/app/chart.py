"""A small server-rendered SVG bar chart: calls written and failed per day or hour.

No JavaScript and no build step: the status page inlines the SVG. It is accessible (``role="img"``,
a ``<title>`` and ``aria-label`` carrying a text summary, a ``<title>`` per bar for pointer
users), every text is escaped, and the output depends only on the input (no ids from counters
or clocks), so it can be compared in tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 480
HEIGHT = 180
_LEFT, _RIGHT, _TOP, _BOTTOM = 34, 6, 10, 26


@dataclass(frozen=True, slots=True)
class Bar:
    """One period: ``label`` under the bar, ``detail`` for its tooltip (both plain text)."""

    label: str
    written: int
    failed: int
    detail: str = ""

    def __post_init__(self) -> None:
        if self.written < 0 or self.failed < 0:
            raise ValueError("counts cannot be negative")


def _nice_max(value: int) -> int:
    """The smallest 1, 2 or 5 times a power of ten at or above ``value`` (at least 1)."""
    step = 1
    while True:
        for factor in (1, 2, 5):
            if step * factor >= value:
                return step * factor
        step *= 10


def _fmt(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def bar_chart(bars: Sequence[Bar], *, title: str, summary: str, written_label: str,
              failed_label: str) -> str:
    """An ``<svg>`` element: one stacked bar per period (written below, failed on top).

    ``title`` names the chart, ``summary`` says in words what it shows (screen readers read it
    instead of the bars); ``written_label``/``failed_label`` name the two series in the legend.
    """
    label = escape(f"{title}: {summary}", quote=True)
    top = _nice_max(max((b.written + b.failed for b in bars), default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    base = _TOP + plot_h
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" '
           f'width="{WIDTH}" height="{HEIGHT}" aria-label="{label}">',
           f"<title>{escape(title)}</title>",
           f"<desc>{escape(summary)}</desc>"]
    for value in (0, top // 2 if top > 1 else None, top):
        if value is None:
            continue
        y = _fmt(base - plot_h * value / top)
        out.append(f'<line class="grid" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y}" y2="{y}"/>'
                   f'<text class="axis" x="{_LEFT - 6}" y="{y}" text-anchor="end" dy="0.32em">{value}</text>')
    if bars:
        slot = plot_w / len(bars)
        width = max(1.0, slot * 0.7)
        every = max(1, -(-len(bars) // 8))  # at most 8 labels under the bars
        for i, bar in enumerate(bars):
            x = _LEFT + slot * i + (slot - width) / 2
            written_h = plot_h * bar.written / top
            failed_h = plot_h * bar.failed / top
            tip = bar.detail or f"{bar.label}: {written_label} {bar.written}, {failed_label} {bar.failed}"
            out.append(f"<g><title>{escape(tip)}</title>")
            if bar.written:
                out.append(f'<rect class="written" x="{_fmt(x)}" y="{_fmt(base - written_h)}" '
                           f'width="{_fmt(width)}" height="{_fmt(written_h)}"/>')
            if bar.failed:
                out.append(f'<rect class="failed" x="{_fmt(x)}" y="{_fmt(base - written_h - failed_h)}" '
                           f'width="{_fmt(width)}" height="{_fmt(failed_h)}"/>')
            out.append("</g>")
            if i % every == 0:
                out.append(f'<text class="axis" x="{_fmt(x + width / 2)}" y="{HEIGHT - 8}" '
                           f'text-anchor="middle">{escape(bar.label)}</text>')
    out.append(f'<line class="baseline" x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{base}" y2="{base}"/>')
    out.append("</svg>")
    return "".join(out)


def legend(written_label: str, failed_label: str) -> str:
    """The two series as HTML (outside the SVG, so it wraps and scales with the page text)."""
    return (f'<ul class="legend"><li><span class="swatch written" aria-hidden="true"></span>{escape(written_label)}'
            f'</li><li><span class="swatch failed" aria-hidden="true"></span>{escape(failed_label)}</li></ul>')

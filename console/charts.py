"""A server-rendered SVG bar chart: documents synced and failed per hour (no JavaScript)."""

from __future__ import annotations

from datetime import datetime
from html import escape

WIDTH, HEIGHT, PAD = 480, 90, 14


def hourly_svg(hours: list[tuple[datetime, int, int]], title: str) -> str:
    """Green bars synced, red bars failed, stacked per hour; the tallest hour fills the height.
    Each bar carries a <title> so a hover says the hour and the counts."""
    top = max((s + f for _, s, f in hours), default=0) or 1
    slot = (WIDTH - 2 * PAD) / max(len(hours), 1)
    usable = HEIGHT - 2 * PAD
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#999" stroke-width="1"/>',
    ]
    for i, (start, synced, failed) in enumerate(hours):
        x = PAD + i * slot + 1
        width = max(slot - 2, 1)
        ok_h = usable * synced / top
        bad_h = usable * failed / top
        label = f"{start:%H}:00 UTC: {synced} synced, {failed} failed"
        base = HEIGHT - PAD
        parts.append(f'<g class="hour"><title>{escape(label)}</title>')
        parts.append(
            f'<rect class="synced" x="{x:.1f}" y="{base - ok_h:.1f}" width="{width:.1f}" '
            f'height="{ok_h:.1f}" fill="#2e7d32"/>'
        )
        parts.append(
            f'<rect class="failed" x="{x:.1f}" y="{base - ok_h - bad_h:.1f}" '
            f'width="{width:.1f}" height="{bad_h:.1f}" fill="#c62828"/></g>'
        )
    if hours:
        parts.append(
            f'<text x="{PAD}" y="{HEIGHT - 2}" font-size="9" fill="#666">{hours[0][0]:%H}:00</text>'
        )
        parts.append(
            f'<text x="{WIDTH - PAD}" y="{HEIGHT - 2}" font-size="9" fill="#666" '
            f'text-anchor="end">now</text>'
        )
        parts.append(f'<text x="{PAD}" y="{PAD - 3}" font-size="9" fill="#666">max {top}/h</text>')
    parts.append("</svg>")
    return "".join(parts)

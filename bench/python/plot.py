"""Draw results.json of bench.py as an SVG bar chart (ops/s per scenario and client).

    python bench/python/plot.py results.json results.svg

No dependencies: the SVG is written by hand, text drawn by the viewer.
"""

from __future__ import annotations

import json
import sys

SCENARIOS = ["seq", "async", "prefork8", "prefork32"]
LABELS = {"seq": "sequential", "async": "asyncio, 50 tasks", "prefork8": "prefork 8",
          "prefork32": "prefork 32"}
COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b"]


def svg(results: dict) -> str:
    clients = list(results["clients"])
    width, height, left, top, bottom = 900, 420, 70, 40, 80
    panel = (width - left - 20) / len(SCENARIOS)
    bar = (panel - 20) / max(1, len(clients))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="14">'
           f'Python clients, ops/s (each panel scaled to its own maximum)</text>']
    for i, sc in enumerate(SCENARIOS):
        vals = [results["clients"][c].get(sc, {}).get("ops_per_sec", 0.0) for c in clients]
        top_val = max(vals) or 1.0
        x0 = left + i * panel
        plot_h = height - top - bottom
        for j, v in enumerate(vals):
            h = plot_h * v / top_val
            x = x0 + 10 + j * bar
            y = top + plot_h - h
            out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar - 2:.1f}" height="{h:.1f}" '
                       f'fill="{COLORS[j % len(COLORS)]}"/>')
            out.append(f'<text x="{x + bar / 2 - 1:.1f}" y="{y - 3:.1f}" text-anchor="middle" '
                       f'font-size="9">{v / 1000:.1f}k</text>')
        out.append(f'<text x="{x0 + panel / 2:.1f}" y="{top + plot_h + 16:.1f}" '
                   f'text-anchor="middle">{LABELS[sc]}</text>')
    for j, c in enumerate(clients):
        x = left + (j % 3) * 250
        y = height - 36 + (j // 3) * 16
        out.append(f'<rect x="{x}" y="{y - 9}" width="10" height="10" '
                   f'fill="{COLORS[j % len(COLORS)]}"/>')
        out.append(f'<text x="{x + 14}" y="{y}">{c}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: plot.py results.json out.svg")
    with open(sys.argv[1]) as f:
        results = json.load(f)
    with open(sys.argv[2], "w") as f:
        f.write(svg(results))


if __name__ == "__main__":
    main()

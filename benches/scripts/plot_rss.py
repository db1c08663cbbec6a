#!/usr/bin/env python3
"""RSS over time from benches/scripts/accumulate.sh's rss.csv as a small SVG (no dependencies).
Usage: plot_rss.py rss.csv out.svg "title" [messages accumulated] [seconds the accumulation took]"""
import csv, sys

rows = [(int(r["seconds"]), int(r["rss_kib"]) / 1024) for r in csv.DictReader(open(sys.argv[1])) if r["rss_kib"]]
title = sys.argv[3] if len(sys.argv) > 3 else "broker RSS"
msgs = float(sys.argv[4]) if len(sys.argv) > 4 else 0
fill_s = float(sys.argv[5]) if len(sys.argv) > 5 else 0
W, H, L, B, T, R = 720, 320, 60, 40, 30, 20
tmax = max(t for t, _ in rows) or 1
ymax = max(512, ((max(m for _, m in rows) // 128) + 1) * 128)
x = lambda t: L + (W - L - R) * t / tmax
y = lambda m: H - B - (H - B - T) * m / ymax
out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
       f'<rect width="{W}" height="{H}" fill="white"/>',
       f'<text x="{W/2}" y="18" text-anchor="middle" font-size="13">{title}</text>']
for m in range(0, int(ymax) + 1, 128):
    out.append(f'<line x1="{L}" y1="{y(m):.1f}" x2="{W-R}" y2="{y(m):.1f}" stroke="#ddd"/>'
               f'<text x="{L-6}" y="{y(m)+4:.1f}" text-anchor="end">{m}</text>')
step = max(10, (tmax // 8) // 10 * 10)
for t in range(0, tmax + 1, step):
    out.append(f'<text x="{x(t):.1f}" y="{H-B+16}" text-anchor="middle">{t}</text>')
out.append(f'<text x="{W/2}" y="{H-6}" text-anchor="middle">seconds since start</text>')
out.append(f'<text x="14" y="{H/2}" transform="rotate(-90 14 {H/2})" text-anchor="middle">RSS (MiB)</text>')
if fill_s:
    out.append(f'<line x1="{x(fill_s):.1f}" y1="{T}" x2="{x(fill_s):.1f}" y2="{H-B}" stroke="#c33" stroke-dasharray="4 3"/>'
               f'<text x="{x(fill_s)-4:.1f}" y="{T+12}" text-anchor="end" fill="#c33">{msgs/1e6:.0f} M messages accumulated</text>')
pts = " ".join(f"{x(t):.1f},{y(m):.1f}" for t, m in rows)
out.append(f'<polyline points="{pts}" fill="none" stroke="#2662c4" stroke-width="1.5"/>')
out.append("</svg>")
open(sys.argv[2], "w").write("\n".join(out))

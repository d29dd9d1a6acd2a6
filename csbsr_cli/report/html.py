"""`report.html`: one static page per segment run that opens from disk, with no server and no network.

It reads what the run wrote (run.json, summary.csv, cracks.csv, json/ and overlay/) and shows the run's
settings, a sortable table of frames with overlay thumbnails that link to the full overlays, a sortable
table of cracks with their severity class, a histogram of crack widths and the crack length per frame.
Charts are inline SVG and sorting is a few lines of inline JavaScript: nothing is fetched.
"""

from __future__ import annotations

import csv
import json
import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ..errors import InputError
from ..utils.atomic import atomic_path, write_text_atomic
from .severity import DEFAULT_NAMES, DEFAULT_THRESHOLDS_MM, UNKNOWN, severity

REPORT = "report.html"
THUMBS = "report_thumbs"
THUMB_WIDTH = 320
SORT_JS = """
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, col) => th.addEventListener("click", () => {
    const body = table.tBodies[0], rows = Array.from(body.rows);
    const up = th.dataset.dir !== "up"; th.dataset.dir = up ? "up" : "down";
    const key = r => { const c = r.cells[col]; const v = c.dataset.v ?? c.textContent;
                       const n = parseFloat(v); return isNaN(n) ? v : n; };
    rows.sort((a, b) => { const x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (up ? 1 : -1); });
    rows.forEach(r => body.appendChild(r));
  }));
}
"""
STYLE = """
body { font: 14px system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; } td, th { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #eee; cursor: pointer; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.sev-wide { background: #f8d0d0; } .sev-moderate { background: #fbe9c8; } .charts { display: flex; gap: 3em; }
figure { margin: 0; } figcaption { font-weight: bold; } img { display: block; }
"""


def _read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _number(value: Any) -> float | None:
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def _cell(value: Any, digits: int = 3) -> str:
    number = _number(value)
    if number is None or isinstance(value, str) and not value.strip():
        return f"<td>{escape(str(value or ''))}</td>"
    text = f"{number:.{digits}g}" if not float(number).is_integer() else f"{int(number)}"
    return f'<td class="num" data-v="{number}">{text}</td>'


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], caption: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(r) + "</tr>" for r in rows)
    return f'<table class="sortable"><caption>{escape(caption)}</caption><thead><tr>{head}</tr></thead>' + (
        f"<tbody>\n{body}\n</tbody></table>"
    )


def bar_chart(labels: Sequence[str], values: Sequence[float], title: str, unit: str) -> str:
    """A small SVG bar chart (no scripts, no fonts to fetch)."""
    width, height, pad = 520, 220, 40
    top = max(values, default=0.0) or 1.0
    step = (width - pad) / max(len(values), 1)
    bars = []
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        h = (height - 2 * pad) * value / top
        x = pad + i * step
        bars.append(
            f'<rect x="{x:.1f}" y="{height - pad - h:.1f}" width="{max(step - 2, 1):.1f}" height="{h:.1f}" '
            f'fill="#c0392b"><title>{escape(label)}: {value:.4g} {escape(unit)}</title></rect>'
        )
    ticks = [
        f'<text x="{pad + i * step:.1f}" y="{height - pad + 14}" font-size="10">{escape(label)}</text>'
        for i, label in enumerate(labels)
        if i % math.ceil(len(labels) / 6) == 0  # at most 6 labels: long ones must not overlap
    ]
    axis = (
        f'<line x1="{pad}" y1="{height - pad}" x2="{width}" y2="{height - pad}" stroke="#444"/>'
        f'<text x="2" y="{pad - 8}" font-size="10">{top:.4g} {escape(unit)}</text>'
    )
    svg = f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">{axis}{"".join(bars)}'
    return f"<figure><figcaption>{escape(title)}</figcaption>{svg}{''.join(ticks)}</svg></figure>"


def _thumbnail(run_dir: Path, overlay: str, key: str) -> str | None:
    """A THUMB_WIDTH px JPEG of the frame's overlay (made once), relative to the run folder."""
    source = run_dir / overlay
    target = run_dir / THUMBS / f"{key}.jpg"
    if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
        return target.relative_to(run_dir).as_posix()
    image = cv2.imread(str(source), cv2.IMREAD_COLOR)
    if image is None:
        return None
    scale = THUMB_WIDTH / image.shape[1]
    small = cv2.resize(
        image, (THUMB_WIDTH, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA
    )
    ok, buf = cv2.imencode(".jpg", small, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return None
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as part:
        part.write_bytes(buf.tobytes())
    return target.relative_to(run_dir).as_posix()


def _records(run_dir: Path) -> dict[str, dict[str, Any]]:
    out = {}
    for path in sorted((run_dir / "json").rglob("*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "frame" in record:
            out[str(record["frame"])] = record
    return out


def width_histogram(widths: Sequence[float], bins: int = 12) -> tuple[list[str], list[float]]:
    """Labels and counts of `bins` equal bins from 0 to the largest width."""
    if not widths:
        return [], []
    top = max(widths) or 1.0
    counts, edges = np.histogram(widths, bins=bins, range=(0.0, top))
    return [f"{edges[i]:.3g}-{edges[i + 1]:.3g}" for i in range(bins)], [float(c) for c in counts]


def _classes(
    run: dict[str, Any], cracks: list[dict[str, str]], asked: Sequence[float] | None, source: Path
) -> tuple[float, ...]:
    """The severity limits of the page: the run's own when cracks.csv carries its classes (segment made
    them; other limits would be a second rule), else `asked` or the defaults (older runs)."""
    own = ((run.get("settings") or {}).get("options") or {}).get("severity_mm")
    classed = bool(cracks) and "severity" in cracks[0]
    if classed and own is not None and asked is not None and tuple(asked) != tuple(own):
        raise InputError(
            f"its cracks are classed by segment --severity-mm {','.join(map(str, own))}: run segment "
            "with other limits instead",
            source,
        )
    if not classed:
        for crack in cracks:
            crack["severity"] = severity(_number(crack.get("max_width_mm")), asked or DEFAULT_THRESHOLDS_MM)
    return tuple(own if classed and own is not None else asked or DEFAULT_THRESHOLDS_MM)


def build_report(run_dir: Path, thresholds_mm: Sequence[float] | None = None) -> Path:
    """Write `run_dir`/report.html (and its thumbnails) from the run's outputs; returns its path.
    `thresholds_mm`: severity limits for runs whose cracks.csv has no severity column."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.csv").is_file():
        raise InputError("not a segment run folder (no summary.csv)", run_dir)
    run = (
        json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        if (run_dir / "run.json").is_file()
        else {}
    )
    frames = _read_csv(run_dir / "summary.csv")
    cracks = _read_csv(run_dir / "cracks.csv")
    records = _records(run_dir)
    mm = bool(cracks) and "max_width_mm" in cracks[0]
    unit = "mm" if mm else "input px"
    width_key, length_key = ("max_width_mm", "length_mm") if mm else ("max_width_px_input", "length_px_input")
    thresholds_mm = _classes(run, cracks, thresholds_mm, run_dir / "cracks.csv")
    names = DEFAULT_NAMES
    per_frame: dict[str, list[dict[str, str]]] = defaultdict(list)
    for crack in cracks:
        per_frame[crack["frame"]].append(crack)
    order = {name: i for i, name in enumerate([*names, UNKNOWN])}

    frame_rows = []
    for frame in frames:
        key = frame["frame"]
        overlay = records.get(key, {}).get("outputs", {}).get("overlay")
        thumb = _thumbnail(run_dir, overlay, key) if overlay and (run_dir / overlay).is_file() else None
        image = f'<img src="{escape(thumb or "")}" width="{THUMB_WIDTH}" alt="">'
        picture = f'<td><a href="{escape(overlay)}">{image}</a></td>' if thumb and overlay else "<td></td>"
        own = per_frame.get(key, [])
        worst = max((c["severity"] for c in own), key=order.__getitem__, default="")
        frame_rows.append(
            [
                picture,
                f"<td>{escape(key)}</td>",
                f"<td>{escape(frame.get('status', ''))}</td>",
                _cell(len(own)),
                _cell(sum(_number(c.get(length_key)) or 0 for c in own)),
                _cell(max((_number(c.get(width_key)) or 0 for c in own), default=0)),
                f'<td data-v="{order.get(worst, -1)}">{escape(worst)}</td>',
            ]
        )
    crack_rows = [
        [
            f"<td>{escape(c['frame'])}</td>",
            _cell(c.get("crack_id")),
            f'<td class="sev-{escape(c["severity"].split()[0])}" data-v="{order[c["severity"]]}">'
            f"{escape(c['severity'])}</td>",
            _cell(c.get(length_key)),
            _cell(c.get("mean_width_mm" if mm else "mean_width_px_input")),
            _cell(c.get(width_key)),
            _cell(c.get("bbox_x_px_input")),
            _cell(c.get("bbox_y_px_input")),
        ]
        for c in sorted(cracks, key=lambda c: (-order[c["severity"]], -(_number(c.get(width_key)) or 0)))
    ]
    counts = Counter(c["severity"] for c in cracks)
    labels, values = width_histogram([w for c in cracks if (w := _number(c.get(width_key))) is not None])
    lengths = [sum(_number(c.get(length_key)) or 0 for c in per_frame.get(f["frame"], [])) for f in frames]
    settings = [[f"<td>{escape(k)}</td>", f"<td>{escape(_flat(v))}</td>"] for k, v in sorted(run.items())]
    classes = ", ".join(
        f"{escape(n)} &lt; {t} mm" if i < len(thresholds_mm) else f"{escape(n)} &ge; {thresholds_mm[-1]} mm"
        for i, (n, t) in enumerate(zip(names, [*thresholds_mm, math.inf], strict=True))
    )
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>csbsr report: {escape(run_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>csbsr run {escape(run_dir.name)}</h1>
<p>{len(frames)} frame(s), {len(cracks)} crack(s): {
        escape(", ".join(f"{n} {counts[n]}" for n in order if counts[n]))
    }.
Figures in {unit}{"" if mm else " (no ground sampling distance: run segment with --gsd for mm and severity)"}.
Severity by maximum width: {classes} (AASHTO MBEI defect 1130). Click a column title to sort. Made {made}.</p>
<div class="charts">{bar_chart(labels, values, f"Crack maximum width ({unit})", "cracks")}
{bar_chart([f["frame"] for f in frames], lengths, f"Crack length per frame ({unit})", unit)}</div>
<h2>Frames</h2>
{
        _table(
            ["overlay", "frame", "status", "cracks", f"length ({unit})", f"max width ({unit})", "worst"],
            frame_rows,
            "",
        )
    }
<h2>Cracks</h2>
{
        _table(
            [
                "frame",
                "crack",
                "severity",
                f"length ({unit})",
                f"mean width ({unit})",
                f"max width ({unit})",
                "x (input px)",
                "y (input px)",
            ],
            crack_rows,
            "",
        )
    }
<h2>Run settings</h2>
{_table(["key", "value"], settings, "run.json")}
<script>{SORT_JS}</script>
</body></html>
"""
    out = run_dir / REPORT
    write_text_atomic(out, body)
    return out


def _flat(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)[:2000]

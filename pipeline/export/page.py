"""The release page: `index.html`, one self-contained file (inline CSS, pictures as inline SVG images, audio
from the release's own `audio/` folder), readable offline with no network.

Every figure on the page is rendered from the report files it names (`data-json="FILE:dotted.path"`), with
`fmt`, so a test can compare what a person sees with the JSON.
"""

from __future__ import annotations

import base64
import html

SVG_WIDTH, SVG_HEIGHT = 420, 180
COLOURS = {"release": "#3b6fb6", "corpus": "#d08a2c", "genuine": "#c0392b", "impostor": "#2e8b57"}


def fmt(value) -> str:
    """How a number from a report is shown on the page (and compared by the browser test)."""
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def lookup(document: dict, path: str):
    value = document
    for key in path.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]
    return value


def _figure(reports: dict, file: str, path: str) -> str:
    value = lookup(reports[file], path)
    return f'<span class="figure" data-json="{html.escape(file)}:{html.escape(path)}">{html.escape(fmt(value))}</span>'


def _svg_image(svg: str, alt: str) -> str:
    data = base64.b64encode(svg.encode()).decode()
    return (f'<img src="data:image/svg+xml;base64,{data}" width="{SVG_WIDTH}" height="{SVG_HEIGHT}" '
            f'alt="{html.escape(alt)}">')


def marker_position(value: float, edges: list) -> float:
    """Where `value` falls along bins drawn with equal widths (0 = left, 1 = right): its bin's index plus its
    place inside that bin (bins may be quantiles of unequal width; an open end bin (edge None): its middle)."""
    bins = len(edges) - 1
    for i in range(bins):
        low, high = edges[i], edges[i + 1]
        if (low is None or value >= low) and (high is None or value < high or i == bins - 1):
            if low is None or high is None:
                inside = 0.5
            else:
                inside = min(max((value - low) / ((high - low) or 1), 0.0), 1.0)
            return (i + inside) / bins
    return 0.0 if edges[0] is not None and value < edges[0] else 1.0


def bar_chart(series: dict[str, list[int]], labels: list[str], title: str, marker: float | None = None,
              edges: list[float] | None = None, empty_note: str = "nothing to draw") -> str:
    """Grouped bars of counts per bin, each series normalised to its total; an optional vertical marker
    (e.g. the threshold) placed by `edges`. Returns an <img> of an inline SVG."""
    bins = len(labels)
    left, bottom, top = 36, SVG_HEIGHT - 34, 22
    width = SVG_WIDTH - left - 10
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{SVG_WIDTH}" height="{SVG_HEIGHT}" '
             f'viewBox="0 0 {SVG_WIDTH} {SVG_HEIGHT}" font-family="sans-serif" font-size="10">',
             f'<rect width="{SVG_WIDTH}" height="{SVG_HEIGHT}" fill="white"/>',
             f'<text x="{left}" y="14" font-size="11">{html.escape(title)}</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{left + width}" y2="{bottom}" stroke="#333"/>']
    shares = {name: [c / max(1, sum(counts)) for c in counts] for name, counts in series.items()}
    peak = max([max(v) for v in shares.values() if v] + [1e-9])
    slot = width / max(1, bins)
    bar = slot / (len(series) + 1)
    for s, (name, values) in enumerate(shares.items()):
        colour = COLOURS.get(name, "#666")
        for i, share in enumerate(values):
            height = (bottom - top) * share / peak
            x = left + i * slot + s * bar + bar / 2
            parts.append(f'<rect x="{x:.1f}" y="{bottom - height:.1f}" width="{bar:.1f}" height="{height:.1f}" '
                         f'fill="{colour}"/>')
        parts.append(f'<rect x="{left + 8 + 90 * s}" y="{SVG_HEIGHT - 12}" width="8" height="8" fill="{colour}"/>'
                     f'<text x="{left + 20 + 90 * s}" y="{SVG_HEIGHT - 4}">{html.escape(name)}</text>')
    for i, label in enumerate(labels):
        if bins <= 8 or i % 2 == 0:
            parts.append(f'<text x="{left + i * slot + slot / 2:.1f}" y="{bottom + 11}" text-anchor="middle">'
                         f'{html.escape(label)}</text>')
    if not any(sum(counts) for counts in series.values()):
        parts.append(f'<text x="{left + width / 2:.1f}" y="{(top + bottom) / 2:.1f}" text-anchor="middle">'
                     f'{html.escape(empty_note)}</text>')
    if marker is not None and edges:
        x = left + marker_position(marker, edges) * width
        anchor, dx = ("end", -3) if x > left + 0.8 * width else ("start", 3)
        parts.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="black" '
                     f'stroke-dasharray="4 3"/><text x="{x + dx:.1f}" y="{top + 8}" text-anchor="{anchor}">'
                     f'threshold</text>')
    parts.append("</svg>")
    return _svg_image("".join(parts), title)


def _bin_labels(edges: list) -> list[str]:
    """A label per bin: its range, open ends written as < and >=."""
    labels = []
    for low, high in zip(edges[:-1], edges[1:]):
        if low is None and high is None:
            labels.append("all")
        elif low is None:
            labels.append(f"<{high:.3g}")
        elif high is None:
            labels.append(f">={low:.3g}")
        else:
            labels.append(f"{(low + high) / 2:.3g}")
    return labels


def release_page(summary: dict, reports: dict, listening: list[dict]) -> str:
    """The page. reports: {"privacy_report.json": ..., "utility_report.json": ..., "manifest.json": summary
    figures}; listening: rows to play (clip_id, genre, split, caption and key features)."""
    privacy, utility = reports["privacy_report.json"], reports["utility_report.json"]
    out = [f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(summary['dataset'])} {html.escape(summary['version'])} — synthetic audio release</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 960px; color: #222; line-height: 1.45; }}
table {{ border-collapse: collapse; margin: .5rem 0 1rem; }} td, th {{ border: 1px solid #ccc; padding: .25rem .5rem; }}
th {{ background: #f3f3f3; text-align: left; }} .figure {{ font-weight: 600; }}
.pictures img {{ margin: .25rem; border: 1px solid #ddd; }} .note {{ color: #555; font-size: .9rem; }}
audio {{ width: 240px; }}
</style></head><body>
<h1>{html.escape(summary['dataset'])} <small>{html.escape(summary['version'])}</small></h1>
<p>{html.escape(summary.get('description') or '')}</p>
<p class="note">Every clip here is <b>synthetic</b>: generated by the model below and checked against a private
reference set of real voices. This page reads nothing from the network; its figures come from
<code>manifest.json</code>, <code>privacy_report.json</code> and <code>utility_report.json</code> beside it.</p>
<h2>Summary</h2>
<table>"""]
    for split in summary["counts"]:
        out.append(f"<tr><th>split {html.escape(split)}</th><td>{_figure(reports, 'manifest.json', f'counts.{split}')}"
                   "</td></tr>")
    out.append(f"""<tr><th>model</th><td>{_figure(reports, 'manifest.json', 'model_preset')}
 <span class="note">weights sha256 {_figure(reports, 'manifest.json', 'model_weights_sha256')}</span></td></tr>
<tr><th>lineage</th><td>reference set fingerprint {_figure(reports, 'manifest.json', 'reference_set_fingerprint')}</td></tr>
</table>
<h2>Privacy</h2>
<table>
<tr><th>leak threshold</th><td>{_figure(reports, 'privacy_report.json', 'threshold')}</td></tr>
<tr><th>clips checked / passed / leaks / unscorable</th><td>{_figure(reports, 'privacy_report.json', 'counts.clips')} /
 {_figure(reports, 'privacy_report.json', 'counts.pass')} / {_figure(reports, 'privacy_report.json', 'counts.leak')} /
 {_figure(reports, 'privacy_report.json', 'counts.unscorable')}</td></tr>
<tr><th>calibration recall (target {_figure(reports, 'privacy_report.json', 'target_recall')})</th>
 <td>{_figure(reports, 'privacy_report.json', 'calibration.recall')}</td></tr>
<tr><th>false-positive rate at the threshold (bound {_figure(reports, 'privacy_report.json', 'max_fpr')})</th>
 <td>{_figure(reports, 'privacy_report.json', 'calibration.false_positive_rate')}</td></tr>
<tr><th>equal error rate</th><td>{_figure(reports, 'privacy_report.json', 'calibration.equal_error_rate')}</td></tr>
</table>
<div class="pictures">""")
    histogram = privacy["score_histogram"]
    out.append(bar_chart({"release": histogram["counts"]}, _bin_labels(histogram["bin_edges"]),
                         "leak scores of generated clips", privacy.get("threshold"), histogram["bin_edges"],
                         empty_note=f"no clip had a voice to score ({privacy['counts']['no_voice']} without voice)"))
    for name, entry in (privacy["calibration"].get("score_histograms") or {}).items():
        if entry:
            out.append(bar_chart({name: entry["counts"]}, _bin_labels(entry["bin_edges"]),
                                 f"calibration scores, {name} trials (bins of 5 or more)", privacy.get("threshold"),
                                 entry["bin_edges"]))
    out.append("</div>")
    overall = utility["overall"]
    out.append(f"""<h2>Fidelity: release vs {html.escape(utility['corpus'])}</h2>
<table>
<tr><th>column shape similarity (mean)</th><td>{_figure(reports, 'utility_report.json', 'overall.column_shapes.mean')}</td></tr>
<tr><th>column pair trends (mean)</th><td>{_figure(reports, 'utility_report.json', 'overall.column_pair_trends.mean')}</td></tr>""")
    frechet = overall["frechet"]
    if "insufficient" in frechet:
        out.append(f"<tr><th>Fréchet distance</th><td>{_figure(reports, 'utility_report.json', 'overall.frechet.insufficient')}"
                   "</td></tr>")
    else:
        out.append(f"""<tr><th>Fréchet distance (standardised features)</th>
 <td>{_figure(reports, 'utility_report.json', 'overall.frechet.frechet_distance')}, 95% interval
 {_figure(reports, 'utility_report.json', 'overall.frechet.bootstrap_ci95.0')} –
 {_figure(reports, 'utility_report.json', 'overall.frechet.bootstrap_ci95.1')}; extrapolated
 {_figure(reports, 'utility_report.json', 'overall.frechet.extrapolated.intercept')}
 (R² {_figure(reports, 'utility_report.json', 'overall.frechet.extrapolated.r2')})</td></tr>""")
    out.append(f"""</table>
<p class="note">Embedding: {html.escape(utility['embedding'])}. Every histogram bin below holds at least five
private items.</p>
<div class="pictures">""")
    for column, entry in utility["histograms"].items():
        similarity = utility["similarity_by_column"].get(column)
        out.append(bar_chart({"release": entry["release"], "corpus": entry["corpus"]}, _bin_labels(entry["bin_edges"]),
                             f"{column} (shape similarity {fmt(similarity)})"))
    out.append("""</div>
<h2>Listen</h2>
<table><tr><th>genre</th><th>split</th><th>clip</th><th>caption</th><th>duration s</th><th>loudness LUFS</th>
<th>centroid Hz</th></tr>""")
    for row in listening:
        out.append(
            f"<tr><td>{html.escape(str(row['genre']))}</td><td>{html.escape(str(row['split']))}</td>"
            f'<td><audio controls preload="metadata" src="audio/{html.escape(row["clip_id"])}.flac"></audio></td>'
            f"<td>{html.escape(str(row['caption']))}</td><td>{fmt(row.get('duration_s'))}</td>"
            f"<td>{fmt(row.get('loudness_lufs'))}</td><td>{fmt(row.get('spectral_centroid_hz_mean'))}</td></tr>")
    out.append("</table>\n</body></html>\n")
    return "\n".join(out)


def listening_sample(rows: list[dict], per_genre: int = 3) -> list[dict]:
    """Up to `per_genre` released clips of every genre, in clip order."""
    chosen: dict[str, list[dict]] = {}
    for row in sorted(rows, key=lambda r: r["clip_id"]):
        group = chosen.setdefault(row["genre"], [])
        if len(group) < per_genre:
            group.append(row)
    return [row for genre in sorted(chosen) for row in chosen[genre]]

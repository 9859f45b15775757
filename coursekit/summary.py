"""The class summary of a problem set: per graded cell the mean, the share of full marks and
the most common failure message; a histogram of the totals and a per-cell bar chart (PNG);
the submissions that could not be graded; all on one HTML page beside the CSV, and as text
at the end of `make grade`."""

from __future__ import annotations

import base64
import collections
import html
import statistics
from dataclasses import dataclass

from .assignment import Outputs
from .feedback import redact


@dataclass
class CellStats:
    grade_id: str
    points: float
    mean: float  # over the submitted students (an ungradable submission counts as 0)
    full_share: float  # fraction with full marks
    failures: int  # graded students who lost points on it (not counting ungradable submissions)
    top_message: str  # the most common failure message (first line), "" if none
    top_count: int


def _gist(msg: str) -> str:
    lines = [s.strip() for s in msg.strip().splitlines() if s.strip()]
    return lines[-1][:160] if lines else ""  # a traceback's last line says what went wrong


def cell_stats(report) -> list[CellStats]:
    """One ``CellStats`` per graded cell, over the students who submitted."""
    rows = report.submitted
    secrets = report.a.secrets
    out = []
    for gid, top in report.a.max_scores.items():
        got = [r.scores[gid] for r in rows]
        msgs = collections.Counter(_gist(redact(r.messages.get(gid, ""), secrets)) or "(no message)"
                                   for r in rows if r.scores[gid] < top and not r.error)  # graded ones
        msg, count = msgs.most_common(1)[0] if msgs else ("", 0)
        out.append(CellStats(gid, top, statistics.fmean(got) if got else 0.0,
                             sum(g >= top for g in got) / len(got) if got else 0.0, sum(msgs.values()), msg, count))
    return out


def text(report) -> str:
    """The summary printed after the console table."""
    rows, stats = report.submitted, cell_stats(report)
    totals = [r.total for r in rows]
    lines = [f"class summary: {len(rows)} submitted of {len(report.rows)} students"
             + (f", mean total {statistics.fmean(totals):.1f}/{report.rows[0].max_total:g}, "
                f"median {statistics.median(totals):g}" if totals else "")
             + f"; late policy: {report.policy.describe()}"]
    width = max((len(s.grade_id) for s in stats), default=8)
    lines.append(f"  {'graded cell':<{width}}  {'mean':>11}  {'full':>5}  most common failure")
    for i, s in enumerate(stats):
        fail = f"{s.top_count}x {s.top_message}" if s.top_count else "-"
        lines.append(f"  {s.grade_id:<{width}}  {s.mean:>5.2f}/{s.points:<5g}  {s.full_share:>5.0%}  {fail[:100]}")
    if report.not_graded:
        lines.append(f"could not be graded ({len(report.not_graded)}):")
        lines += [f"  {who}: {why}" for who, why in report.not_graded]
    return "\n".join(lines)


def _figures(report, stats, out: Outputs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    top = report.rows[0].max_total if report.rows else 1.0
    totals = [r.total for r in report.submitted]
    fig, ax = plt.subplots(figsize=(6.4, 3.2), dpi=100)
    ax.hist(totals, bins=min(20, max(1, int(top))), range=(0, top), color="#4c72b0", edgecolor="white")
    ax.set_xlabel(f"total (of {top:g}, late penalty applied)")
    ax.set_ylabel("students")
    ax.set_title(f"{report.a.id}: totals of {len(totals)} submissions")
    fig.tight_layout()
    fig.savefig(out.totals_png)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(6.4, 0.28 * len(stats) + 1.5), 3.4), dpi=100)
    xs = range(len(stats))
    ax.bar(xs, [s.mean / s.points if s.points else 0 for s in stats], color="#55a868", label="mean / points")
    ax.plot(xs, [s.full_share for s in stats], "o", color="#c44e52", label="share with full marks")
    ax.set_xticks(list(xs), [f"q{i + 1}" for i in xs], rotation=90 if len(stats) > 15 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("fraction")
    ax.set_title(f"{report.a.id}: per graded cell")
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(out.cells_png)
    plt.close(fig)


def _img(path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()


def write(report, out: Outputs) -> None:
    """Both figures and the HTML page (figures embedded, so the page can be mailed alone)."""
    e = html.escape
    stats = cell_stats(report)
    out.root.mkdir(parents=True, exist_ok=True)
    _figures(report, stats, out)
    counts = collections.Counter(r.status for r in report.rows)
    cells = "".join(f"<tr><td>q{i + 1}</td><td><code>{e(s.grade_id)}</code></td><td>{s.mean:.2f} / {s.points:g}</td>"
                    f"<td>{s.full_share:.0%}</td><td>{s.failures}</td>"
                    f"<td>{e(f'{s.top_count}x ' + s.top_message) if s.top_count else ''}</td></tr>"
                    for i, s in enumerate(stats))
    bad = "".join(f"<li><b>{e(who)}</b>: {e(why)}</li>" for who, why in report.not_graded)
    totals = [r.total for r in report.submitted]
    ps = report.a.ps
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{e(ps.id)} class summary</title>
<style>body{{font-family:sans-serif;max-width:70em;margin:2em auto}} td,th{{border-bottom:1px solid #ddd;
padding:.25em .5em;text-align:left;vertical-align:top}} img{{max-width:100%}}</style></head><body>
<h1>{e(ps.id)} — {e(ps.title)}: class summary</h1>
<p>{len(totals)} submitted of {len(report.rows)} students ({e(', '.join(f'{v} {k}' for k, v in sorted(counts.items())))})
{f"&middot; mean total <b id='mean-total'>{statistics.fmean(totals):.2f}</b> / {report.rows[0].max_total:g}" if totals else ""}
&middot; due {ps.due:%Y-%m-%d %H:%M} &middot; late policy: {e(report.policy.describe())}</p>
<img alt="histogram of totals" src="{_img(out.totals_png)}">
<img alt="per graded cell" src="{_img(out.cells_png)}">
<h2>Per graded cell</h2>
<table><tr><th></th><th>graded cell</th><th>mean</th><th>full marks</th><th>lost points (graded)</th>
<th>most common failure</th></tr>{cells}</table>
<h2>Could not be graded</h2>{f'<ul>{bad}</ul>' if bad else '<p>none</p>'}
</body></html>
"""
    tmp = out.summary_html.with_name(out.summary_html.name + ".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(out.summary_html)

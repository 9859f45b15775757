"""`make site`: the course website, built with Sphinx + MyST-NB from the committed releases.

    python -m coursekit.site [--date YYYY-MM-DD] [--out build/site]

* a home page: the syllabus (week, problem set, title, release and due dates from
  ``course.toml``) and the key papers of every week with links;
* one page per problem set *released* on ``--date`` (default: today in the course's time zone),
  rendered from its student notebook ``release/psNN/psNN.ipynb`` (markdown, LaTeX, the stubs and
  the public tests; the release holds no solution and no hidden test), with a download link to the
  student bundle ``psNN.zip`` (the notebook and ``dlt_checks.py``);
* for the problem sets listed in ``[site] figures_after_due`` of ``course.toml``, once the due
  date has passed: the figures that the instructor notebook produces (executed at build time,
  in a scratch folder), shown under the student's figure cell.

A problem set released after ``--date`` has no page, no bundle and no link. Before anything is
written to ``--out``, every page is checked: no line of a hidden test or of a solution region
(lines that also appear in the student notebook are public) may appear in it, and the Sphinx
build must be free of warnings. MathJax comes from the pinned ``jupyter-server-mathjax``
package and is copied into the site, so the site needs no CDN. The output is a folder of static
files: publish it on any static host (README, "Course website").
"""

from __future__ import annotations

import argparse
import datetime as dt
import html
import html.parser
import io
import json
import os
import re
import shutil
import sys
import tomllib
import urllib.parse
import warnings
import zipfile
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path

from .assignment import Assignment
from .manifest import CHECKS_SOURCE, HELPER_NAME, MANIFEST, Layout, ProblemSet, load

SITE_CONF = Layout().site_conf
DEFAULT_OUT = Layout().site_out
MIN_SECRET_CHARS = 8  # shorter lines (`)`, `return x`) say nothing about a solution


class SiteError(RuntimeError):
    """The site cannot be built, or a page would show something it must not."""


@dataclass
class Plan:
    date: dt.date
    sets: list[ProblemSet]
    released: list[ProblemSet]
    figures: list[ProblemSet]  # released, past due, and listed in [site] figures_after_due
    options: dict = field(default_factory=dict)

    @property
    def future(self) -> list[ProblemSet]:
        return [p for p in self.sets if p not in self.released]


# --------------------------------------------------------------------------- what is public


def _text(cell) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def notebook_lines(nb_path: Path) -> set[str]:
    nb = json.loads(Path(nb_path).read_text(encoding="utf-8"))
    return {ln.strip() for c in nb["cells"] for ln in _text(c).splitlines()}


def secret_lines(sets: list[ProblemSet]) -> set[str]:
    """Lines of hidden tests and solution regions of every instructor notebook that appear in no
    student notebook (a line some release shows is public anyway) and are long enough to mean
    something."""
    secret: set[str] = set()
    public: set[str] = set()
    for ps in sets:
        if ps.source_notebook.exists():
            secret |= set(Assignment.of(ps).secret_lines(1, comments=True))
        if ps.release_notebook.exists():
            public |= notebook_lines(ps.release_notebook)
    shown = "\n".join(_norm(s) for s in public)  # a secret line inside a public one is public too
    return {s for s in secret - public if len(s) >= MIN_SECRET_CHARS and _norm(s) not in shown}


class _TextExtractor(html.parser.HTMLParser):
    """The text a reader sees: scripts and styles dropped, tags removed, entities decoded."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(html_source: str) -> str:
    parser = _TextExtractor()
    parser.feed(html_source)
    return "".join(parser.parts)


def _norm(s: str) -> str:
    return " ".join(s.split())


def leaks(text: str, secrets: set[str], substring_from: int = 30) -> list[str]:
    """The secret lines that ``text`` shows: as a line of their own (whitespace-normalised), or,
    for lines of at least ``substring_from`` characters, anywhere."""
    lines = {_norm(ln) for ln in text.splitlines()}
    hay = _norm(text)
    return sorted(s for s in secrets if _norm(s) in lines or (len(s) >= substring_from and _norm(s) in hay))


# --------------------------------------------------------------------------- plan and pages


def site_options(path: Path = MANIFEST) -> dict:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return data.get("site", {})


def course_options(path: Path = MANIFEST) -> dict:
    data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    return data.get("course", {})


def today(path: Path = MANIFEST) -> dt.date:
    tz = course_options(path).get("timezone", "UTC")
    return dt.datetime.now(zoneinfo.ZoneInfo(tz)).date()


def plan(date: dt.date, path: Path = MANIFEST, figures: bool = True) -> Plan:
    sets = load(path)
    opts = site_options(path)
    released = [p for p in sets if p.written and p.release <= date and p.release_notebook.exists()]
    wanted = set(opts.get("figures_after_due", []))
    unknown = wanted - {p.id for p in sets}
    if unknown:
        raise SiteError(f"[site] figures_after_due names unknown problem sets: {sorted(unknown)}")
    shown = [p for p in released if figures and p.id in wanted and date > p.due.date()]
    return Plan(date=date, sets=sets, released=released, figures=shown, options=opts)


def paper_link(citation: str) -> str:
    m = re.search(r"arXiv:\s*(\d{4}\.\d{4,5})", citation)
    if m:
        return f"https://arxiv.org/abs/{m.group(1)}"
    m = re.search(r"\b(10\.\d{4,9}/\S+[^\s.,;])", citation)
    if m:
        return f"https://doi.org/{m.group(1)}"
    return "https://scholar.google.com/scholar?q=" + urllib.parse.quote_plus(citation)


def _link_label(url: str) -> str:
    return "arXiv" if "arxiv.org" in url else "DOI" if "doi.org" in url else "Google Scholar"


def _md_escape(s: str) -> str:
    return re.sub(r"([\\`*_\[\]<>|{}$])", r"\\\1", s)


def _when(d: dt.datetime) -> str:
    return d.strftime("%a %d %b %Y, %H:%M")


def home_page(p: Plan) -> str:
    course = course_options(p.sets[0].root / "course.toml")
    tz = course.get("timezone", "UTC")
    name = course.get("name", "Deep Learning Theory")
    released = {q.id for q in p.released}
    out = [
        f"# {name}",
        "",
        p.options.get(
            "intro",
            "A graduate course on the theory of deep learning: eleven weeks, one topic each, and a "
            "problem set per week in which you derive a result of the week's papers and then "
            "implement and test it in a Jupyter notebook.",
        ),
        "",
        "## Syllabus",
        "",
        f"Dates in {tz}. A problem set gets its page here on its release date.",
        "",
        "| Week | Problem set | Topic | Released | Due |",
        "| --- | --- | --- | --- | --- |",
    ]
    for week, q in enumerate(p.sets, 1):
        label = f"{{doc}}`{q.id} <{q.id}>`" if q.id in released else f"{q.id} (not released yet)"
        out.append(f"| {week} | {label} | {_md_escape(q.title)} | {q.release:%a %d %b %Y} | {_when(q.due)} |")
    out += [
        "",
        "## How to work on a problem set",
        "",
        "Download the bundle from the problem set's page and unzip it: it holds the notebook and "
        "`dlt_checks.py` (keep them in one folder). Open the notebook in JupyterLab, replace every "
        "`raise NotImplementedError()`, then *Run All*: the visible tests say what is wrong. "
        "*Validate* (nbgrader) runs the notebook again and lists the tests that fail. Before "
        "submitting, `python dlt_checks.py psNN.ipynb` lists unfinished exercises and files that "
        "would not be graded. Hidden tests check more at grading time.",
        "",
        "## Key papers",
        "",
    ]
    for week, q in enumerate(p.sets, 1):
        out += [f"### Week {week}: {_md_escape(q.title)}", ""]
        out += [f"- {_md_escape(c)} [{_link_label(paper_link(c))}]({paper_link(c)})" for c in q.papers]
        out.append("")
    if p.released:
        out += ["```{toctree}", ":hidden:", ":maxdepth: 1", ""] + [q.id for q in p.released] + ["```", ""]
    return "\n".join(out)


def _markdown_cell(text: str) -> dict:
    return {"cell_type": "markdown", "metadata": {}, "source": text}


def bundle(ps: ProblemSet, dest: Path) -> Path:
    """``psNN.zip``: the released folder (notebook + dlt_checks.py) under ``psNN/``, byte-stable."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(ps.release_dir.iterdir()):
            if f.is_file() and not f.name.startswith("."):
                info = zipfile.ZipInfo(f"{ps.id}/{f.name}", date_time=(2020, 1, 1, 0, 0, 0))
                info.external_attr = 0o644 << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, f.read_bytes())
    dest.write_bytes(buf.getvalue())
    return dest


def _execute(nb, workdir: Path, timeout: int):
    from jupyter_client.manager import KernelManager
    from nbclient import NotebookClient

    # IPC sockets in the scratch folder: nothing listens on TCP while the build runs
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(workdir / "kernel"))
    client = NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(workdir)}})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # nbformat's "missing cell id" on the stripped source notebook
            # the kernel draws inline whatever MPLBACKEND this process has (a grader sets Agg)
            env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}
            client.execute(env=env)
    finally:
        if km.has_kernel:  # a kernel manager passed in is not shut down by nbclient
            km.shutdown_kernel(now=True)
    return nb


def instructor_figures(ps: ProblemSet, timeout: int = 600) -> list[tuple[str, list[bytes]]]:
    """Per unlabelled code cell of the instructor notebook that draws: (its source, its PNGs).

    The notebook runs in a scratch folder without its graded test cells (figure cells use the
    setup and the solutions, not the tests; this keeps the build short); if that fails, it runs
    whole."""
    import base64
    import tempfile

    import nbformat

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = nbformat.from_dict(json.loads(json.dumps(Assignment.of(ps).source_nb)))  # run a copy
    quick = nbformat.from_dict(json.loads(json.dumps(full)))
    quick.cells = [c for c in quick.cells if not (c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))]
    nb = None
    with tempfile.TemporaryDirectory(prefix=f"site-{ps.id}-") as tmp:
        shutil.copy(CHECKS_SOURCE, Path(tmp) / HELPER_NAME)
        for attempt in (quick, full):
            try:
                nb = _execute(attempt, Path(tmp), timeout)
                break
            except Exception as exc:  # noqa: BLE001 - reported with the problem set's name
                error = exc
        if nb is None:
            raise SiteError(f"{ps.id}: the instructor notebook failed while making its figures: {error}")
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code" or cell.metadata.get("nbgrader"):
            continue
        pngs = [base64.b64decode(o["data"]["image/png"]) for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
        if pngs:
            out.append((cell.source, pngs))
    return out


def problem_set_page(ps: ProblemSet, week: int, stage: Path, figures: list[tuple[str, list[bytes]]] | None) -> None:
    nb = json.loads(ps.release_notebook.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
    info = (
        f"**Week {week}** · released {ps.release:%a %d %b %Y} · due {_when(ps.due)} · {ps.points} points\n\n"
        f"{{download}}`Download the student bundle ({ps.id}.zip) <{ps.id}.zip>`: the notebook and "
        "`dlt_checks.py`; keep them in one folder, open the notebook in JupyterLab, fill in every "
        "`raise NotImplementedError()`, *Run All*, then *Validate*."
    )
    nb["cells"].insert(1, _markdown_cell(info))
    if figures:
        (stage / "figures").mkdir(exist_ok=True)
        n = 0
        for source, pngs in figures:
            md = ["**After the due date: the instructor's result.** The cell above, run with the reference solutions:", ""]
            for png in pngs:
                n += 1
                name = f"figures/{ps.id}_{n}.png"
                (stage / name).write_bytes(png)
                md += [f"![{ps.id}: figure {n} of the instructor notebook]({name})", ""]
            at = next((i for i, c in enumerate(nb["cells"]) if c["cell_type"] == "code" and _text(c) == source), None)
            if at is None:
                md[0] = "**After the due date: the instructor's result** (a figure of the instructor notebook):"
                nb["cells"].append(_markdown_cell("\n".join(md)))
            else:
                nb["cells"].insert(at + 1, _markdown_cell("\n".join(md)))
    (stage / f"{ps.id}.ipynb").write_text(json.dumps(nb, indent=1, ensure_ascii=False), encoding="utf-8")
    bundle(ps, stage / f"{ps.id}.zip")


def mathjax_dir() -> Path:
    import jupyter_server_mathjax

    return Path(jupyter_server_mathjax.__file__).parent / "static"


# --------------------------------------------------------------------------- build


def build(date: dt.date | None = None, out: Path = DEFAULT_OUT, path: Path = MANIFEST, figures: bool = True,
          log=print) -> Plan:
    """Stage and build the site for ``date`` into ``out``; returns what was published."""
    from sphinx.application import Sphinx

    date = date or today(path)
    p = plan(date, path, figures)
    out = Path(out)
    stage = out.parent / f"{out.name}-src"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / "index.md").write_text(home_page(p), encoding="utf-8")
    for week, ps in enumerate(p.sets, 1):
        if ps in p.released:
            figs = instructor_figures(ps) if ps in p.figures else None
            problem_set_page(ps, week, stage, figs)
    shutil.copytree(mathjax_dir(), stage / "_static" / "mathjax")

    course = course_options(path)
    build_dir = stage / "_build"
    messages = io.StringIO()
    status = io.StringIO()
    app = Sphinx(
        srcdir=str(stage), confdir=str(SITE_CONF), outdir=str(build_dir / "html"), doctreedir=str(build_dir / "doctrees"),
        buildername="html", status=status, warning=messages, freshenv=True,
        confoverrides={
            "project": course.get("name", "Deep Learning Theory"),
            "html_title": course.get("name", "Deep Learning Theory"),
            "copyright": str(date.year),
            "html_static_path": [str(stage / "_static")],
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nbformat's "missing cell id" (reading, not a page problem)
        app.build()
    problems = [w for w in messages.getvalue().splitlines() if w.strip()]
    if app.statuscode or problems:
        raise SiteError("the Sphinx build reported problems:\n  " + "\n  ".join(problems or ["status code %s" % app.statuscode]))

    html_dir = build_dir / "html"
    found = check_pages(html_dir, p)
    if found:
        raise SiteError("pages would show hidden tests or solutions:\n  " + "\n  ".join(found))
    shutil.rmtree(html_dir / "_sources", ignore_errors=True)  # html_copy_source = False leaves it empty
    (html_dir / ".nojekyll").write_text("")  # GitHub Pages: serve the _static/ folders as they are
    if out.exists():
        shutil.rmtree(out)
    shutil.copytree(html_dir, out)
    log(f"site: {out / 'index.html'} for {date} -- released: "
        f"{', '.join(q.id for q in p.released) or 'none'}; instructor figures: {', '.join(q.id for q in p.figures) or 'none'}; "
        f"not yet released: {', '.join(q.id for q in p.future) or 'none'}")
    return p


def check_pages(html_dir: Path, p: Plan) -> list[str]:
    """Every hidden-test or solution line found in any page, and any page of an unreleased set."""
    secrets = secret_lines(p.sets)
    problems = []
    for page in sorted(html_dir.rglob("*.html")):
        for s in leaks(page_text(page.read_text(encoding="utf-8")), secrets):
            problems.append(f"{page.relative_to(html_dir)}: {s}")
    for ps in p.future:
        for f in html_dir.rglob(f"{ps.id}*"):
            problems.append(f"{f.relative_to(html_dir)}: {ps.id} is not released on {p.date}")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m coursekit.site", description=__doc__.split("\n\n")[0])
    ap.add_argument("--date", type=dt.date.fromisoformat, default=None,
                    help="publish what is released on this date (YYYY-MM-DD; default: today in the course's time zone)")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: build/site)")
    ap.add_argument("--manifest", type=Path, default=MANIFEST, help="course.toml")
    ap.add_argument("--no-figures", action="store_true", help="do not run instructor notebooks for their figures")
    args = ap.parse_args(argv)
    try:
        build(args.date, args.out, args.manifest, figures=not args.no_figures)
    except SiteError as exc:
        print(f"site: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The course website (coursekit/site.py), built for a date on which some problem sets are released
and others are not, served over HTTP as a static host would, and read in headless Chromium.

Checks: the home page (syllabus, papers) and every released problem set's page render, with their
LaTeX typeset by the bundled MathJax and no build message shown to readers; no page shows a line
of a hidden test or of a solution region of any instructor notebook; the bundle download is the
release; the instructor's figure appears after the due date only where course.toml asks for it;
a problem set released after the date has no page, no bundle and no link.
Screenshots (build/e2e/): the home page and the ps03 page (top and the instructor figure).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile

import pytest
from e2ekit import all_lines, cell_text, found_in, free_port, hidden_test_lines, revealing, solution_lines, stop, wait_http

from coursekit import manifest, site

DATE = dt.date(2027, 2, 2)  # ps01-ps04 released, ps03's due date passed; ps05-ps11 in the future
TIMEOUT_MS = 60_000
MATHJAX_DONE = "() => window.MathJax && MathJax.isReady && MathJax.Hub.queue.pending === 0"


def test_plan_follows_the_dates():
    """Which sets are published, and when the instructor figures are shown (no build, no browser)."""
    sets = manifest.load()
    before_first = site.plan(sets[0].release - dt.timedelta(days=1))
    assert before_first.released == []
    p = site.plan(DATE)
    assert [q.id for q in p.released] == [q.id for q in sets if q.release <= DATE and q.written]
    wanted = set(site.site_options().get("figures_after_due", []))
    assert {q.id for q in p.figures} == {q.id for q in p.released if q.id in wanted and DATE > q.due.date()}
    for q in p.released:
        on_due_day = site.plan(q.due.date())
        assert q.id not in {f.id for f in on_due_day.figures}, f"{q.id}: figure shown before the due date passed"


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("site") / "site"
    t0 = time.monotonic()
    p = site.build(DATE, out)
    seconds = time.monotonic() - t0
    port = free_port()
    log = out.parent / "http.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(out)],
        stdout=open(log, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/index.html", 30, proc, log)
        yield p, out, f"http://127.0.0.1:{port}", seconds
    finally:
        stop(proc)


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code


def open_page(browser, url: str):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # MathJax's assistive (hidden) MathML asks for TeX .otf fonts the package does not ship; what
    # readers see is the HTML-CSS rendering with the STIX-Web fonts, which are there
    page.on("response", lambda r: errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not re.search(r"/_static/mathjax/fonts/HTML-CSS/TeX/otf/\w+-\w+\.otf$", r.url) else None)
    page.goto(url)
    page.wait_for_load_state("load")
    return page, errors


def check_rendered(page, name: str) -> dict:
    """LaTeX typeset, no build messages; returns counts for the report."""
    n_math = page.locator("span.math.notranslate, div.math.notranslate").count()
    if n_math:
        page.wait_for_function(MATHJAX_DONE)
    raw = page.evaluate(
        "() => [...document.querySelectorAll('span.math.notranslate, div.math.notranslate')]"
        ".filter(e => !e.querySelector('.MathJax, .MathJax_Display, .MathJax_MathML, .MathJax_SVG'))"
        ".map(e => e.textContent.slice(0, 80))"
    )
    assert not raw, f"{name}: {len(raw)} formulas not typeset, e.g. {raw[:3]}"
    bad_tex = page.locator(".MathJax_Error, .merror, .noError").count()
    assert bad_tex == 0, f"{name}: {bad_tex} formulas with TeX errors"
    msgs = page.locator(".system-message, .problematic").all_inner_texts()
    assert not msgs, f"{name}: build messages shown to readers: {msgs[:3]}"
    text = page.locator("body").inner_text()
    for word in ("System Message", "Traceback (most recent call last)", "WARNING:", "ERROR:"):
        assert word not in text, f"{name}: the page shows {word!r}"
    return {"math": n_math, "text": text}


@pytest.mark.browser
@pytest.mark.slow
@pytest.mark.xdist_group("browser")
def test_site(browser, built, output_dir):
    p, out, base, build_s = built
    t0 = time.monotonic()
    released = [q.id for q in p.released]
    future = [q.id for q in p.future]
    assert released and future, "the date should release some sets and not others"
    assert "ps03" in released and "ps03" in {q.id for q in p.figures}, "this test expects ps03's figure to be shown"

    # what must never appear: hidden tests and solution regions of every instructor notebook
    secret, public = set(), set()
    for q in p.sets:
        if q.source_notebook.exists():
            secret |= hidden_test_lines(q.source_notebook) | solution_lines(q.source_notebook)
        if q.release_notebook.exists():
            public |= all_lines(q.release_notebook)
    secret = revealing(secret, public)
    assert len(secret) > 100, "too few hidden/solution lines found: is source/ there?"

    # home page
    page, errors = open_page(browser, f"{base}/index.html")
    home = check_rendered(page, "index.html")
    page.screenshot(path=str(output_dir / "site_home.png"), full_page=True)
    for week, q in enumerate(p.sets, 1):
        assert q.title in home["text"], f"syllabus misses week {week}: {q.title}"
        assert f"{q.release:%d %b %Y}" in home["text"], f"syllabus misses {q.id}'s release date"
    links = page.eval_on_selector_all("a[href]", "els => els.map(e => e.getAttribute('href'))")
    n_papers = sum(len(q.papers) for q in p.sets)
    assert sum(1 for h in links if h.startswith("https://")) >= n_papers, "every key paper needs a link"
    for q in released:
        assert any(h.split("#")[0] == f"{q}.html" for h in links), f"home page does not link {q}"
    for q in future:
        assert not any(q in h for h in links), f"home page links the unreleased {q}"
    assert not found_in(home["text"], secret)
    assert not errors, f"index.html: {errors[:5]}"
    page.close()

    # every released problem set
    report = {}
    for q in p.released:
        page, errors = open_page(browser, f"{base}/{q.id}.html")
        r = check_rendered(page, f"{q.id}.html")
        assert r["math"] > 0, f"{q.id}: no LaTeX on the page"
        assert q.title in r["text"]
        nb = json.loads(q.release_notebook.read_text(encoding="utf-8"))
        stubs = sum("raise NotImplementedError()" in cell_text(c) for c in nb["cells"] if c["cell_type"] == "code")
        assert r["text"].count("raise NotImplementedError()") >= stubs, f"{q.id}: stubs missing from the page"
        public_tests = [c for c in nb["cells"] if c.get("metadata", {}).get("nbgrader", {}).get("grade")]
        for c in public_tests:
            first = cell_text(c).splitlines()[0].strip()
            assert first in r["text"], f"{q.id}: public test {first[:60]} missing"
        leaked = found_in(r["text"], secret)
        assert not leaked, f"{q.id}.html shows hidden test or solution lines: {leaked[:5]}"
        raw_html = (out / f"{q.id}.html").read_text(encoding="utf-8")
        leaked = found_in(site.page_text(raw_html), secret)
        assert not leaked, f"{q.id}.html source holds hidden test or solution lines: {leaked[:5]}"

        # the bundle: the released folder, byte for byte
        href = page.locator("a.download").first.get_attribute("href")
        assert href and href.endswith(f"{q.id}.zip"), f"{q.id}: no bundle link"
        with urllib.request.urlopen(f"{base}/{href}") as resp:
            z = zipfile.ZipFile(io.BytesIO(resp.read()))
        files = {n: z.read(n) for n in z.namelist()}
        expected = {f"{q.id}/{f.name}": f.read_bytes() for f in q.release_dir.iterdir() if f.is_file()}
        assert files == expected, f"{q.id}.zip differs from release/{q.id}/"

        figures = page.locator("img[src*='_images/']")
        if q in p.figures:
            assert figures.count() >= 1, f"{q.id}: instructor figure missing after the due date"
            assert page.locator("text=After the due date").count() >= 1
            page.screenshot(path=str(output_dir / f"site_{q.id}_top.png"))
            figures.last.scroll_into_view_if_needed()
            page.wait_for_timeout(300)
            page.screenshot(path=str(output_dir / f"site_{q.id}_figure.png"))
            ok = page.evaluate("imgs => imgs.every(i => i.complete && i.naturalWidth > 100)", figures.element_handles())
            assert ok, f"{q.id}: a figure did not load"
        else:
            assert figures.count() == 0, f"{q.id}: shows instructor figures although not asked or not yet due"
        assert not errors, f"{q.id}.html: {errors[:5]}"
        report[q.id] = r["math"]
        page.close()

    # future problem sets: no page, no bundle, not in the search index
    for q in future:
        assert http_status(f"{base}/{q}.html") == 404, f"{q}.html exists before its release"
        assert not list(out.rglob(f"{q}*")), f"files of {q} published before its release"
    index_js = (out / "searchindex.js").read_text(encoding="utf-8")
    docnames = json.loads(re.search(r'"docnames":\s*(\[[^\]]*\])', index_js).group(1))
    assert sorted(docnames) == sorted(["index", *released]), docnames
    print(f"\n[e2e] site for {DATE}: build {build_s:.1f} s, browser checks {time.monotonic() - t0:.1f} s; "
          f"formulas per page {report}")

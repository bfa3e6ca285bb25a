"""The documentation site reads well in a real browser: headless Chromium opens every built page.

At a 1400 px window: the content column is at least 900 px wide; every table fits it (one still
wider than the column scrolls inside its own box, and only because it has too many columns, not
because its cells may not wrap); every image loads and has alt text, and every plot under
``docs/benchmarks/`` is shown on a page; no console error and no request leaving the site (the
docs must read offline); no page scrolls sideways; the hook reference's parameter tables are
tables with one row per parameter.

Needs Debian's ``chromium`` and the ``playwright`` package, driven with ``executable_path`` (no
playwright browser download); ``bash setup.sh`` installs both. Where they are missing these tests
fail saying so; ``CADENZA_SKIP_BROWSER=1`` skips them on a machine without apt.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import inspect
import os
import shutil
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from urllib.parse import urlparse

import markdown
import pytest

from cadenza.core import hookspecs

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the `browser` fixture fails naming the fix
    sync_playwright = None

ROOT = Path(__file__).resolve().parents[2]
VIEWPORT = {"width": 1400, "height": 900}
MIN_COLUMN_PX = 900
PLOT_SUFFIXES = (".png", ".svg", ".jpg", ".jpeg", ".webp")

browser_check = pytest.mark.skipif(os.environ.get("CADENZA_SKIP_BROWSER") == "1",
                                   reason="CADENZA_SKIP_BROWSER=1: no headless browser on this machine")

# What a page looks like to a reader, measured in the page. The content column is the theme's
# `div[role=main]`. A table's box is the nearest element from the table up to the column that
# clips its overflow (the theme makes the table itself `display: block; overflow: auto`).
MEASURE = """() => {
  const column = document.querySelector('div[role=main]');
  const c = column.getBoundingClientRect();
  const clips = el => ['auto', 'scroll', 'hidden'].includes(getComputedStyle(el).overflowX);
  const tables = [...column.querySelectorAll('table')].map((table, index) => {
    let box = table;
    for (let el = table; el && el !== column; el = el.parentElement) if (clips(el)) { box = el; break; }
    const b = box.getBoundingClientRect();
    const unwrappable = [...table.querySelectorAll('th, td')]
      .filter(cell => ['nowrap', 'pre'].includes(getComputedStyle(cell).whiteSpace)).length;
    return {index, left: b.left, right: b.right, clips: clips(box),
            scrolls: box.scrollWidth > box.clientWidth + 1, content: box.scrollWidth, unwrappable};
  });
  const images = [...document.images].map(img => ({src: img.currentSrc || img.src, alt: img.alt,
                                                   loaded: img.complete && img.naturalWidth > 0}));
  const root = document.documentElement;
  return {column: {left: c.left, right: c.right, width: c.width}, tables, images,
          sideways: root.scrollWidth - root.clientWidth};
}"""

HOOK_TABLES = """() => [...document.querySelectorAll('div[role=main] h3')].map(h => {
  let el = h.nextElementSibling;
  while (el && !/^H[1-3]$/.test(el.tagName) && !(el.matches('table') || el.querySelector('table')))
    el = el.nextElementSibling;
  const table = el && (el.matches('table') ? el : el.querySelector('table'));
  const cells = row => [...row.children].map(cell => cell.textContent.trim());
  return {heading: h.textContent.trim(),
          header: table ? [...table.querySelectorAll('thead tr')].map(cells)[0] : null,
          rows: table ? [...table.querySelectorAll('tbody tr')].map(cells) : []};
})"""


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site as `mkdocs build` writes it (`test_docs_build.py` checks it builds strictly)."""
    out = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--quiet", "--config-file",
                             str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
                            capture_output=True, text=True, cwd=ROOT)
    assert "No module named mkdocs" not in result.stderr, "mkdocs is missing: pip install -e '.[dev]'"
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def base_url(site):
    """The site served over HTTP on localhost, as a reader's browser gets it (the search runs in a worker)."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def browser():
    if sync_playwright is None:
        pytest.fail("playwright is missing: pip install -e '.[dev]' (bash setup.sh does); "
                    "CADENZA_SKIP_BROWSER=1 skips the browser checks", pytrace=False)
    executable = chromium_path()
    if executable is None:
        pytest.fail("chromium is missing: apt-get install --no-install-recommends chromium (bash setup.sh does); "
                    "CADENZA_SKIP_BROWSER=1 skips the browser checks", pytrace=False)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable)
        yield launched
        launched.close()


def open_page(browser, base_url):
    """A page at the test window size, and the list its console errors, failed loads and requests
    leaving the site are appended to (those requests are refused: the docs must read offline)."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    problems: list[str] = []

    def route(request_route):
        url = request_route.request.url
        if url.startswith(base_url):
            request_route.continue_()
        else:
            problems.append(f"requests {url} from outside the site")
            request_route.abort()

    def console(message):
        if message.type == "error":
            problems.append(f"console error: {message.text}")

    def response(answer):
        if answer.status >= 400:
            problems.append(f"{answer.url}: HTTP {answer.status}")

    context.route("**/*", route)
    page.on("console", console)
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("response", response)
    return context, page, problems


@pytest.fixture(scope="module")
def pages(site, base_url, browser) -> dict[str, dict]:
    """Every page of the site (its URL path, e.g. `hooks/`) -> what MEASURE saw and the page's problems."""
    context, page, problems = open_page(browser, base_url)
    found = {}
    for index in sorted(site.rglob("index.html")):
        path = index.parent.relative_to(site).as_posix()
        path = "" if path == "." else path + "/"
        problems.clear()
        page.goto(base_url + path, wait_until="load")
        found[path or "(home)"] = {**page.evaluate(MEASURE), "problems": list(problems)}
    context.close()
    assert len(found) > 20 and "hooks/" in found, sorted(found)
    return found


@browser_check
@pytest.mark.slow
def test_the_content_column_is_wide(pages):
    narrow = [f"{path}: {facts['column']['width']:.0f} px" for path, facts in pages.items()
              if facts["column"]["width"] < MIN_COLUMN_PX]
    assert not narrow, f"content column under {MIN_COLUMN_PX} px at a {VIEWPORT['width']} px window:\n" + "\n".join(narrow)


@browser_check
@pytest.mark.slow
def test_tables_fit_the_column(pages):
    bad = []
    for path, facts in pages.items():
        column = facts["column"]
        for t in facts["tables"]:
            where = f"{path}: table {t['index'] + 1}"
            if t["left"] < column["left"] - 1 or t["right"] > column["right"] + 1:
                bad.append(f"{where}: its box ({t['right'] - t['left']:.0f} px) is wider than the column "
                           f"({column['width']:.0f} px)")
            elif t["scrolls"] and (not t["clips"] or t["unwrappable"]):
                bad.append(f"{where}: {t['content']} px of content scrolls in a {column['width']:.0f} px column "
                           f"with {t['unwrappable']} cell(s) that may not wrap")
    assert not bad, "\n".join(bad)


@browser_check
@pytest.mark.slow
def test_every_image_loads_and_says_what_it_shows(pages):
    bad = [f"{path}: {img['src']}: " + ("not loaded" if not img["loaded"] else "no alt text")
           for path, facts in pages.items() for img in facts["images"]
           if not img["loaded"] or not img["alt"].strip()]
    assert not bad, "\n".join(bad)


@browser_check
@pytest.mark.slow
def test_every_benchmark_plot_is_shown_on_a_page(pages, base_url):
    plots = {"benchmarks/" + p.relative_to(ROOT / "docs" / "benchmarks").as_posix()
             for p in (ROOT / "docs" / "benchmarks").rglob("*") if p.suffix.lower() in PLOT_SUFFIXES}
    assert plots, "no plots under docs/benchmarks/: the check would see nothing"
    base = urlparse(base_url).path
    shown = {urlparse(img["src"]).path.removeprefix(base) for facts in pages.values() for img in facts["images"]}
    missing = sorted(plots - shown)
    assert not missing, ("plots under docs/ shown on no page (an image, `![what it shows](file.png)`, "
                         "in the benchmark's page, not a link):\n" + "\n".join(missing))


@browser_check
@pytest.mark.slow
def test_no_console_errors_and_nothing_fetched_from_outside(pages):
    bad = [f"{path}: {problem}" for path, facts in pages.items() for problem in facts["problems"]]
    assert not bad, "\n".join(bad)


@browser_check
@pytest.mark.slow
def test_no_page_scrolls_sideways(pages):
    bad = [f"{path}: {facts['sideways']} px" for path, facts in pages.items() if facts["sideways"] > 0]
    assert not bad, "pages wider than the window:\n" + "\n".join(bad)


@browser_check
@pytest.mark.slow
def test_hook_reference_parameter_tables_are_tables(browser, base_url):
    context, page, _ = open_page(browser, base_url)
    page.goto(base_url + "hooks/", wait_until="load")
    sections = page.evaluate(HOOK_TABLES)
    context.close()
    specs = {name: f for name, f in vars(hookspecs).items()
             if inspect.isfunction(f) and hasattr(f, f"{hookspecs.PROJECT}_spec")}
    assert len(specs) >= 10
    for name, func in specs.items():
        found = [s for s in sections if s["heading"].startswith(f"{name}(")]
        assert len(found) == 1, f"hooks/: {len(found)} headings for {name}"
        section = found[0]
        params = list(inspect.signature(func).parameters)
        assert section["header"] == ["parameter", "type", "meaning"], section
        assert [row[0] for row in section["rows"]] == params, section
        for row in section["rows"]:
            assert len(row) == 3 and all(row), (name, row)
            assert not any("`" in cell or "\\|" in cell for cell in row), (name, row)


def _generator():
    spec = importlib.util.spec_from_file_location("gen_reference", ROOT / "docs" / "gen_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_generated_table_cell_keeps_pipes_and_newlines_inside_it():
    """What docs/gen_reference.py writes in a cell renders as one cell, `|` and line breaks included."""
    cell = _generator().table_cell
    kind, meaning = cell("`str | None`"), cell("either a|b,\nor `c`")
    html = markdown.markdown(f"| p | t | m |\n|---|---|---|\n| `x` | {kind} | {meaning} |\n", extensions=["tables"])
    [tbody] = ET.fromstring(f"<root>{html}</root>").iter("tbody")
    cells = ["".join(td.itertext()) for td in tbody.find("tr")]
    assert cells == ["x", "str | None", "either a|b, or c"]

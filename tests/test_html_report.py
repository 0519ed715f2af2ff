"""The HTML report: one self-contained page, checked as text and in a real headless browser.

The browser tests use Debian's ``chromium``; where it is missing they install it when running
as root with ``CI=true`` (or ``KDDBENCH_INSTALL_BROWSER=1``), and are skipped with the reason
only where no browser can be had.  Each opens the page from a file, sorts a column by clicking
its header, filters the rows, checks that every picture loaded and that a click enlarges one,
and saves a screenshot under the test's temporary directory.
"""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

SUITE = """
[suite]
name = "page"
description = "A fabricated report: records written by the test, no training."
budget = "none: the numbers are made up by the test"

[protocols.quick]
epochs = 3

[[experiments]]
name = "toy"
task = "condense"
dataset = "toy"
method = ["full", "random", "average"]
ipc = [2, 5]
eval_arch = "convnet"
protocol = "quick"
seeds = [0, 1, 2]

[[tables]]
name = "main"
title = "Main table"
rows = ["method"]
columns = ["ipc"]
baseline = { method = "random" }

[[references]]
match = { method = "average", ipc = 5 }
metric = "accuracy"
value = 50.0
std = 1.5
source = "Somebody et al., 2020, A made-up paper"
note = "a made-up number"
"""

# accuracy of (method, ipc) by seed: "average" clearly beats "random" at ipc 5
VALUES = {("random", 2): [30.0, 32.0, 31.0], ("random", 5): [40.0, 41.0, 42.0],
          ("average", 2): [29.0, 35.0, 31.0], ("average", 5): [55.0, 56.0, 54.0],
          ("full", None): [90.0, 91.0, 89.0]}


def _png(path: Path, width: int, height: int, rgb=(40, 90, 160)) -> None:
    """A small valid PNG written with the standard library."""
    import struct
    import zlib

    raw = b"".join(b"\0" + bytes(rgb) * width for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def fabricate(tmp_path: Path, failed_seed: int | None = 2):
    """A suite file and a report directory holding its records (one cell failed)."""
    from kddbench.runner import base_record
    from kddbench.store import ResultStore
    from kddbench.suite import load_suite

    suite_path = tmp_path / "page.toml"
    suite_path.write_text(SUITE)
    suite = load_suite(suite_path)
    out = tmp_path / "report"
    store = ResultStore(out)
    env = {"git": "0123456789ab", "torch": "9.9.9", "device": "cpu", "python": "3.11.7",
           "kddbench": "0.1.0", "platform": "TestOS", "torch_threads": 1}
    for cell in suite.cells:
        key = (cell.axes["method"], cell.axes.get("ipc"))
        record = base_record(cell, suite.name, env)
        if cell.axes["method"] == "full" and cell.seed == failed_seed:
            record.update(status="error", metrics={}, error="RuntimeError: out of patience",
                          traceback="Traceback...\nRuntimeError: out of patience")
        else:
            record.update(status="ok", metrics={"accuracy": VALUES[key][cell.seed],
                                                "train_time_s": 1.0 + cell.seed},
                          wall_time_s=2.0)
        store.put(record)
    _png(out / "pictures" / "toy_random_ipc2_seed0_final.png", 40, 30)
    _png(out / "pictures" / "toy_average_ipc2_seed0_final.png", 30, 40, (200, 60, 40))
    return suite, out


def test_the_page_is_self_contained_and_holds_the_reports_numbers(tmp_path):
    from kddbench import api

    suite, out = fabricate(tmp_path)
    api.report(suite, out, html=True)
    page = (out / "index.html").read_text()
    # nothing fetched: no external script, style, picture or font
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "@import" not in page
    srcs = re.findall(r'<img src="([^"]*)"', page)
    assert srcs and all(s.startswith("data:image/png;base64,") for s in srcs)
    # every picture beside the report: the budget figure and the two of pictures/
    assert len(srcs) == 1 + 2 and (out / "plot_main.png").is_file()
    # the entry lines: mean, std, n, the published number and the difference from it
    mean = sum(VALUES[("average", 5)]) / 3
    std = math.sqrt(sum((v - mean) ** 2 for v in VALUES[("average", 5)]) / 2)
    row = re.search(r"<tr><td>average</td><td[^>]*>5</td>(.*?)</tr>", page).group(1)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>.*?</td>", row)]
    assert cells[:5] == [f"{mean:.2f}", f"{std:.2f}", "3", "50.00 ± 1.50", f"{mean - 50:+.2f}"]
    # the verdict against the baseline row is the Markdown report's
    assert cells[5:] == [f"{mean - 41.0:+.2f}", "better"]
    assert "within noise" in page  # average vs random at ipc 2 overlap
    assert 'class="baseline"' in page
    # the failed cell and its one-line cause; provenance and plugin versions
    assert "RuntimeError: out of patience" in page and "Traceback..." not in page
    for text in ("0123456789ab", "9.9.9", "TestOS", "condenser", "convnet"):
        assert text in page
    assert "none: the numbers are made up by the test" in page
    assert "Somebody et al., 2020" in page  # the why-they-differ table


def test_pictures_beyond_the_budget_are_left_out_and_counted(tmp_path):
    from kddbench.html import write_html

    suite, out = fabricate(tmp_path)
    from kddbench.report import write_reports

    write_reports(suite, out)
    budget = (out / "plot_main.png").stat().st_size + 10
    page = write_html(suite, out, max_picture_bytes=budget).read_text()
    assert page.count('<img src="data:') == 1
    assert "2 picture(s) left out of this page" in page


def test_a_history_beside_the_report_becomes_a_section(tmp_path):
    from kddbench import history
    from kddbench.html import write_html
    from kddbench.report import tidy, write_reports

    suite, out = fabricate(tmp_path, failed_seed=None)
    df = write_reports(suite, out)
    for n, commit in enumerate(["aaaa1111", "bbbb2222"]):
        history.append(df, out / "history.csv", commit=commit, date=f"2026-01-0{n + 1}",
                       machine="box")
    page = write_html(suite, out).read_text()
    assert 'id="history"' in page and "aaaa1111" in page and "bbbb2222" in page
    assert page.count('<img src="data:') == 1 + 2 + 1  # + the history figure
    assert tidy  # (used by write_reports)


def test_markdown_of_sections_renders_tables_and_pictures(tmp_path):
    from kddbench.html import Pictures, _Ids, markdown_to_html

    _png(tmp_path / "fig.png", 4, 4)
    md = ("## A section\n\nSome `code` and **bold**.\n\n| a | b |\n|:--|--:|\n| x | 1 |\n"
          "| y | 2 |\n\n![the figure](fig.png)\n\n- one\n- two\n")
    out = markdown_to_html(md, Pictures(tmp_path), _Ids())
    assert "<h3>A section</h3>" in out and "<code>code</code>" in out
    assert '<table class="sortable"' in out and '<td class="num">2</td>' in out
    assert 'src="data:image/png;base64,' in out and "<li>two</li>" in out
    assert "<script" not in markdown_to_html("<script>alert(1)</script>", Pictures(tmp_path),
                                             _Ids())


# ---------------------------------------------------------------------------------------------
# in a real browser


def _find_browser() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


@pytest.fixture(scope="module")
def browser():
    path = _find_browser()
    if path is None:
        may_install = (os.environ.get("KDDBENCH_INSTALL_BROWSER") == "1"
                       or os.environ.get("CI") == "true")
        if not may_install or not hasattr(os, "geteuid") or os.geteuid() != 0:
            pytest.skip("no chromium here, and installing one needs root with CI=true or "
                        "KDDBENCH_INSTALL_BROWSER=1")
        if shutil.which("apt-get") is None:
            pytest.skip("no chromium here and no apt-get to install it")
        try:
            subprocess.run("apt-get update -q && apt-get install -y -q chromium", shell=True,
                           check=True, capture_output=True, timeout=1200)
        except (subprocess.SubprocessError, OSError) as exc:
            pytest.skip(f"chromium could not be installed: {type(exc).__name__}")
        path = _find_browser()
        if path is None:
            pytest.skip("chromium was installed but is not on PATH")
    return path


def _chromium(browser: str, tmp_path: Path, *args: str, timeout: int = 180) -> str:
    profile = tmp_path / "chromium-profile"
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--disable-extensions", f"--user-data-dir={profile}", *args]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return done.stdout


PROBE = r"""
<script>
window.addEventListener('load', function () {
  var res = {};
  try {
    var t = document.querySelector('table.sortable');
    var head = t.tHead.rows[0].cells, col = -1;
    for (var i = 0; i < head.length; i++) if (head[i].textContent.trim() === 'mean') col = i;
    if (col < 0) col = head.length - 1;
    var rows = function () { return Array.prototype.slice.call(t.tBodies[0].rows); };
    var values = function () { return rows().map(function (r) {
      var c = r.cells[col], v = c.getAttribute('data-v');
      return v === null ? c.textContent.trim() : v; }); };
    res.column = head[col].textContent.trim();
    res.before = values();
    head[col].click(); res.asc = values(); res.ariaAsc = head[col].getAttribute('aria-sort');
    head[col].click(); res.desc = values(); res.ariaDesc = head[col].getAttribute('aria-sort');
    var counts = {}, firsts = rows().map(function (r) { return r.cells[0].textContent.trim(); });
    firsts.forEach(function (f) { counts[f] = (counts[f] || 0) + 1; });
    var word = firsts.filter(function (f) { return counts[f] < firsts.length; })[0] || firsts[0];
    var input = document.querySelector('input[data-filter="' + t.id + '"]');
    input.value = word; input.dispatchEvent(new Event('input'));
    var visible = rows().filter(function (r) { return r.style.display !== 'none'; });
    res.word = word; res.total = firsts.length; res.visible = visible.length;
    res.visibleMatch = visible.every(function (r) {
      return r.textContent.toLowerCase().indexOf(word.toLowerCase()) >= 0; });
    res.counter = document.getElementById(t.id + '-count').textContent;
    var imgs = Array.prototype.slice.call(document.querySelectorAll('img[src]'));
    res.images = imgs.length;
    res.broken = imgs.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return i.alt; });
    var gallery = document.querySelector('input[data-gallery]');
    if (gallery) {
      var figs = Array.prototype.slice.call(document.querySelectorAll('#pictures-all figure'));
      gallery.value = figs[figs.length - 1].textContent.trim().split('.')[0];
      gallery.dispatchEvent(new Event('input'));
      res.galleryTotal = figs.length;
      res.galleryShown = figs.filter(function (f) { return f.style.display !== 'none'; }).length;
      gallery.value = ''; gallery.dispatchEvent(new Event('input'));
    }
    var fig = document.querySelector('figure img');
    if (fig) { fig.click(); var box = document.getElementById('lightbox');
      res.enlarged = box.classList.contains('open') && box.querySelector('img').src === fig.src; }
  } catch (e) { res.error = String(e); }
  var pre = document.createElement('pre'); pre.id = 'kdd-probe';
  pre.textContent = JSON.stringify(res); document.body.appendChild(pre);
});
</script>
"""


def _check_in_browser(browser: str, page: Path, tmp_path: Path, name: str) -> dict:
    probe = tmp_path / f"{name}-probe.html"
    text = page.read_text()
    probe.write_text(text.replace("</body>", PROBE + "</body>"))
    dom = _chromium(browser, tmp_path, "--virtual-time-budget=20000", "--dump-dom",
                    probe.as_uri())
    found = re.search(r'<pre id="kdd-probe">(.*?)</pre>', dom, re.S)
    assert found, f"the probe did not run: {dom[-500:]!r}"
    import html as html_mod

    res = json.loads(html_mod.unescape(found.group(1)))
    assert "error" not in res, res
    # sorting a column reorders its rows: ascending, then descending
    assert res["ariaAsc"] == "ascending" and res["ariaDesc"] == "descending"
    nums = [float(v) for v in res["asc"] if _number(v)]
    assert nums == sorted(nums) and len(set(nums)) > 1, res
    assert [float(v) for v in res["desc"] if _number(v)] == sorted(nums, reverse=True)
    # the filter hides the rows without its word
    assert 0 < res["visible"] < res["total"] and res["visibleMatch"], res
    assert res["counter"] == f"{res['visible']} of {res['total']} rows"
    # every picture loads, and a click enlarges one
    assert res["images"] > 0 and res["broken"] == [], res
    assert res["enlarged"] is True
    if "galleryTotal" in res:  # the pictures' own filter: one picture's full name finds it
        assert res["galleryTotal"] > 4 and res["galleryShown"] == 1, res
    shot = tmp_path / f"{name}.png"
    _chromium(browser, tmp_path, "--window-size=1280,2200", f"--screenshot={shot}",
              "--virtual-time-budget=20000", page.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000
    return res


def _number(v) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def test_the_page_works_in_a_browser(tmp_path, browser):
    from kddbench import api

    suite, out = fabricate(tmp_path)
    api.report(suite, out, html=True)
    res = _check_in_browser(browser, out / "index.html", tmp_path, "page")
    assert res["images"] == 3 and res["total"] == 5 and res["column"] == "mean"


@pytest.mark.parametrize("name", ["quickstart", "condense_cpu"])
def test_the_committed_pages_work_in_a_browser(tmp_path, browser, name):
    page = ROOT / "reports" / name / "index.html"
    assert page.is_file(), f"reports/{name}/index.html: run kddbench report suites/{name}.toml --html"
    pictures = sum(1 for p in (ROOT / "reports" / name).rglob("*.png"))
    res = _check_in_browser(browser, page, tmp_path, name)
    assert res["images"] >= pictures  # every committed picture is on the page


def test_run_and_report_keep_an_existing_page_in_step(tmp_path):
    import json as json_mod

    from kddbench import api

    suite, out = fabricate(tmp_path, failed_seed=None)
    api.report(suite, out)
    assert not (out / "index.html").exists()  # no page unless asked for
    api.report(suite, out, html=True)
    record = next(p for p in sorted((out / "records").glob("*.json"))
                  if json_mod.loads(p.read_text())["axes"]["method"] == "full")
    data = json_mod.loads(record.read_text())
    data["metrics"]["accuracy"] = 12.0
    record.write_text(json_mod.dumps(data))
    api.report(suite, out)
    mean = (12.0 + sum(VALUES[("full", None)]) - VALUES[("full", None)][data["seed"]]) / 3
    assert f">{mean:.2f}<" in (out / "index.html").read_text()
    data["metrics"]["accuracy"] = 13.0
    record.write_text(json_mod.dumps(data))
    api.run(suite, out, jobs=1, progress=False)  # every cell done: no compute, reports rebuilt
    mean += 1.0 / 3
    assert f">{mean:.2f}<" in (out / "index.html").read_text()

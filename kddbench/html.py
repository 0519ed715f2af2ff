"""The report as one self-contained web page: ``reports/<suite>/index.html``.

Built from the same data as the Markdown report (:mod:`kddbench.report`): every ``[[tables]]``
entry becomes a sortable, filterable table with one line per entry (its row and column labels,
the mean, standard deviation and number of seeds, the published number and our difference
from it, the difference from the table's baseline row with its verdict); the report sections
render their own Markdown; the provenance of the records (git, torch, device, every plugin's
version) and the suite's budget are listed; every picture beside the report (``*.png`` and
``pictures/**/*.png``) is inlined and enlarges on a click.  A regression history
(``history.csv``, :mod:`kddbench.history`) beside the report adds its figure and entries.

Nothing is fetched from the network: styles, the small sort/filter script and the pictures are
inlined (pictures as ``data:`` URIs, never downscaled).  When the pictures exceed
``max_picture_bytes`` in total (default 15 MB) the first ones that fit are inlined and the page
says how many were left out.  Standard library only (``html``, ``base64``); pandas comes in
through the report's own functions.
"""
from __future__ import annotations

import base64
import html
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

MAX_PICTURE_BYTES = 15 * 1024 * 1024
PAGE = "index.html"
HISTORY_FILE = "history.csv"

_STYLE = """
:root{--fg:#1d2330;--muted:#5b6475;--line:#d9dde5;--head:#eef1f6;--accent:#2456a6;
--good:#16794a;--bad:#b3261e}
*{box-sizing:border-box}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);
margin:0 auto;max-width:1280px;padding:1.2rem 1.6rem 4rem}
h1{font-size:1.7rem;margin:.4rem 0 .6rem}h2{font-size:1.3rem;margin:2.2rem 0 .6rem;
border-bottom:1px solid var(--line);padding-bottom:.25rem}h3{font-size:1.1rem;margin:1.4rem 0 .4rem}
nav{font-size:.9rem;margin:.6rem 0 1rem}nav a{margin-right:.9rem}
a{color:var(--accent)}code{background:#f3f4f7;padding:0 .25em;border-radius:3px;font-size:.92em}
.muted{color:var(--muted)}.prov{font-size:.9rem}
.tablewrap{overflow-x:auto;margin:.4rem 0 1rem}
table{border-collapse:collapse;font-size:.9rem}
th,td{border:1px solid var(--line);padding:.25rem .55rem;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
thead th{background:var(--head);position:sticky;top:0}
table.sortable thead th{cursor:pointer;user-select:none;white-space:nowrap}
table.sortable thead th::after{content:" \\2195";color:#9aa3b2;font-size:.8em}
table.sortable thead th[aria-sort=ascending]::after{content:" \\25B2";color:var(--fg)}
table.sortable thead th[aria-sort=descending]::after{content:" \\25BC";color:var(--fg)}
tr.baseline td{background:#f6f8fb;font-style:italic}
td.better{color:var(--good);font-weight:600}td.worse{color:var(--bad);font-weight:600}
.filter{margin:.3rem 0;display:flex;gap:.6rem;align-items:center;font-size:.88rem}
.filter input{font:inherit;padding:.2rem .45rem;width:22rem;max-width:70vw}
figure{margin:.6rem 0 1.2rem}figure img{max-width:min(100%,820px);height:auto;cursor:zoom-in;
border:1px solid var(--line)}figcaption{font-size:.85rem;color:var(--muted)}
.gallery{display:flex;flex-wrap:wrap;gap:.7rem}
.gallery figure{width:250px;margin:0}.gallery img{width:250px;height:auto}
.gallery figcaption{word-break:break-all}
#lightbox{position:fixed;inset:0;background:rgba(10,12,18,.88);display:none;
align-items:center;justify-content:center;z-index:10;cursor:zoom-out;flex-direction:column}
#lightbox.open{display:flex}#lightbox img{max-width:96vw;max-height:90vh;background:#fff}
#lightbox div{color:#eee;margin-top:.5rem;font-size:.9rem}
"""

# Sorting (click a header; again to reverse), filtering (every word must occur in the row),
# click-to-enlarge.  Cells may carry data-v, the value they sort by.
_SCRIPT = r"""
(function(){
function val(td){var v=td.getAttribute('data-v');if(v===null){v=td.textContent.trim();}
  var n=parseFloat(v);return (v!==''&&isFinite(v))?{n:n}:{s:v.toLowerCase()};}
function cmp(a,b){if('n' in a&&'n' in b)return a.n-b.n;if('n' in a)return -1;if('n' in b)return 1;
  return a.s<b.s?-1:a.s>b.s?1:0;}
function sortBy(table,col){var th=table.tHead.rows[0].cells[col];
  var dir=th.getAttribute('aria-sort')==='ascending'?'descending':'ascending';
  Array.prototype.forEach.call(table.tHead.rows[0].cells,function(c){c.removeAttribute('aria-sort');});
  th.setAttribute('aria-sort',dir);var body=table.tBodies[0];
  var rows=Array.prototype.slice.call(body.rows).map(function(r,i){return [r,i];});
  rows.sort(function(x,y){var d=cmp(val(x[0].cells[col]),val(y[0].cells[col]));
    if(dir==='descending')d=-d;return d||x[1]-y[1];});
  rows.forEach(function(x){body.appendChild(x[0]);});}
function applyFilter(table,text){var words=text.toLowerCase().split(/\s+/).filter(Boolean);
  var shown=0,rows=table.tBodies[0].rows;
  for(var i=0;i<rows.length;i++){var t=rows[i].textContent.toLowerCase();
    var ok=words.every(function(w){return t.indexOf(w)>=0;});
    rows[i].style.display=ok?'':'none';if(ok)shown++;}
  var c=document.getElementById(table.id+'-count');
  if(c)c.textContent=shown+' of '+rows.length+' rows';return shown;}
window.kddbench={sortBy:sortBy,applyFilter:applyFilter};
document.addEventListener('DOMContentLoaded',function(){
  Array.prototype.forEach.call(document.querySelectorAll('table.sortable'),function(t){
    Array.prototype.forEach.call(t.tHead.rows[0].cells,function(th,i){
      th.addEventListener('click',function(){sortBy(t,i);});});});
  Array.prototype.forEach.call(document.querySelectorAll('input[data-filter]'),function(inp){
    var t=document.getElementById(inp.getAttribute('data-filter'));
    inp.addEventListener('input',function(){applyFilter(t,inp.value);});});
  Array.prototype.forEach.call(document.querySelectorAll('input[data-gallery]'),function(inp){
    inp.addEventListener('input',function(){
      var words=inp.value.toLowerCase().split(/[\s_]+/).filter(Boolean);
      Array.prototype.forEach.call(document.querySelectorAll('#pictures-all figure'),function(f){
        var t=f.textContent.toLowerCase();
        f.style.display=words.every(function(w){return t.indexOf(w)>=0;})?'':'none';});});});
  var box=document.getElementById('lightbox'),big=box.querySelector('img'),
      cap=box.querySelector('div');
  Array.prototype.forEach.call(document.querySelectorAll('figure img'),function(img){
    img.addEventListener('click',function(){big.src=img.src;cap.textContent=img.alt;
      box.classList.add('open');});});
  box.addEventListener('click',function(){box.classList.remove('open');big.removeAttribute('src');});
  document.addEventListener('keydown',function(e){if(e.key==='Escape')box.click();});
});})();
"""


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


# ---------------------------------------------------------------------------------------------
# pictures


class Pictures:
    """Inlines pictures of one report directory as ``data:`` URIs, up to a byte budget.

    The first picture asked for that would go past the budget, and every later one, is left
    out (counted in :attr:`left_out`); a picture asked for twice is inlined once per use."""

    def __init__(self, root: Path, budget: int = MAX_PICTURE_BYTES):
        self.root = Path(root)
        self.budget = budget
        self.used = 0
        self.left_out: list[str] = []
        self.shown: set[str] = set()
        self.full = False

    def uri(self, rel: str) -> str | None:
        path = (self.root / rel)
        try:
            data = path.read_bytes()
        except OSError:
            return None
        if self.full or self.used + len(data) > self.budget:
            self.full = True
            if rel not in self.left_out:
                self.left_out.append(rel)
            return None
        self.used += len(data)
        self.shown.add(rel)
        mime = "image/svg+xml" if rel.endswith(".svg") else \
            "image/jpeg" if rel.endswith((".jpg", ".jpeg")) else "image/png"
        return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")

    def figure(self, rel: str, caption: str = "") -> str:
        src = self.uri(rel)
        cap = esc(caption or rel)
        if src is None:
            if rel in self.left_out:
                return (f'<p class="muted">Picture <code>{esc(rel)}</code> left out of this page '
                        f"(the pictures exceed {self.budget / 2**20:.0f} MB).</p>")
            return f'<p class="muted">Picture <code>{esc(rel)}</code> is missing.</p>'
        return (f'<figure><img src="{src}" alt="{cap}"><figcaption>{cap}'
                "</figcaption></figure>")


def picture_files(out_dir: Path) -> list[str]:
    """Every picture of a report directory, relative to it: top-level ``*.png`` first, then
    ``pictures/**/*.png``, each sorted by name."""
    out_dir = Path(out_dir)
    top = sorted(p.name for p in out_dir.glob("*.png") if p.is_file())
    deep = sorted(str(p.relative_to(out_dir)) for p in (out_dir / "pictures").rglob("*.png")
                  if p.is_file()) if (out_dir / "pictures").is_dir() else []
    return top + deep


# ---------------------------------------------------------------------------------------------
# a little Markdown (what the report and its sections write)

_TABLE_SEP = re.compile(r"^\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$")
_IMAGE = re.compile(r"^!\[([^\]]*)\]\(([^)\s]+)\)\s*$")


def _inline(text: str) -> str:
    out = esc(text)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", out)
    out = re.sub(r"(?<![\w*])_([^_]+)_(?!\w)", r"<em>\1</em>", out)
    out = re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', out)
    return out


def _split_row(line: str) -> list[str]:
    line = line.strip()
    if line.startswith("|"):
        line = line[1:]
    if line.endswith("|"):
        line = line[:-1]
    return [c.strip() for c in line.split("|")]


class _Ids:
    def __init__(self):
        self.n = 0

    def next(self, stem: str = "t") -> str:
        self.n += 1
        return f"{stem}{self.n}"


def markdown_to_html(text: str, pictures: Pictures, ids: _Ids) -> str:
    """Headings, paragraphs, bullet lists, pipe tables (sortable and filterable) and image
    lines (inlined through ``pictures``); inline code, bold, emphasis and links."""
    lines = text.splitlines()
    out: list[str] = []
    para: list[str] = []
    items: list[str] = []

    def flush():
        if para:
            out.append("<p>" + _inline(" ".join(para)) + "</p>")
            para.clear()
        if items:
            out.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in items) + "</ul>")
            items.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("#"):
            flush()
            level = min(len(stripped) - len(stripped.lstrip("#")), 4)
            out.append(f"<h{level + 1}>{_inline(stripped.lstrip('#').strip())}</h{level + 1}>")
        elif stripped.startswith("|") and i + 1 < len(lines) and _TABLE_SEP.match(
                lines[i + 1].strip()):
            flush()
            head = _split_row(stripped)
            body = []
            i += 2
            while i < len(lines) and lines[i].strip().startswith("|"):
                body.append(_split_row(lines[i]))
                i += 1
            out.append(table_html(head, [[(_inline(c), None) for c in r] for r in body], ids,
                                  raw=True))
            continue
        elif _IMAGE.match(stripped):
            flush()
            alt, src = _IMAGE.match(stripped).groups()
            out.append(pictures.figure(src, alt))
        elif stripped.startswith(("- ", "* ")):
            if para:
                out.append("<p>" + _inline(" ".join(para)) + "</p>")
                para.clear()
            items.append(stripped[2:])
        elif items and line.startswith("  "):
            items[-1] += " " + stripped
        else:
            para.append(stripped)
        i += 1
    flush()
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# tables


def _is_num(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except (TypeError, ValueError):
        return False


def table_html(head: Sequence[str], rows: Iterable[Sequence[tuple[str, Any]]], ids: _Ids,
               raw: bool = False, classes: Sequence[str] = (),
               row_classes: Sequence[str] | None = None, filter_box: bool = True) -> str:
    """A sortable, filterable table.  Each cell is ``(text, sort value or None)``; ``raw``
    means the texts are HTML already."""
    rows = list(rows)
    tid = ids.next()
    parts = []
    if filter_box and len(rows) > 1:
        parts.append(f'<div class="filter"><input type="search" data-filter="{tid}" '
                     f'placeholder="filter rows: every word must appear" aria-label="filter">'
                     f'<span class="muted" id="{tid}-count">{len(rows)} of {len(rows)} rows'
                     "</span></div>")
    parts.append(f'<div class="tablewrap"><table class="sortable" id="{tid}"><thead><tr>'
                 + "".join(f"<th>{h if raw else esc(h)}</th>" for h in head)
                 + "</tr></thead><tbody>")
    for n, row in enumerate(rows):
        cls = row_classes[n] if row_classes else ""
        cells = []
        for j, (text, sort) in enumerate(row):
            plain = re.sub(r"<[^>]+>", "", text) if raw else str(text)
            kinds = []
            if sort is not None or _is_num(plain.strip()):
                kinds.append("num")
            if j < len(classes) and classes[j]:
                kinds.append(classes[j])
            if plain.strip() in ("better", "worse"):
                kinds.append(plain.strip())
            attr = f' class="{" ".join(kinds)}"' if kinds else ""
            if sort is not None:
                attr += f' data-v="{esc(sort)}"'
            cells.append(f"<td{attr}>{text if raw else esc(text)}</td>")
        parts.append(f'<tr{f" class={chr(34)}{cls}{chr(34)}" if cls else ""}>'
                     + "".join(cells) + "</tr>")
    parts.append("</tbody></table></div>")
    return "\n".join(parts)


def _num(value: Any, digits: int, signed: bool = False) -> tuple[str, Any]:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return "—", None
    if math.isnan(v):
        return "—", None
    return (f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"), round(v, 10)


_VERSUS = re.compile(r"^([+-]?[0-9.]+|[+-]?nan|[+-]?inf) \((.*)\)$")


def entry_rows(df, table, references) -> tuple[list[str], list[list[tuple[str, Any]]],
                                               list[str]]:
    """One line per entry of a ``[[tables]]`` table: its labels, mean, std, n, the published
    number and our difference from it, the difference from the baseline row and its
    verdict.  Statistics come from :func:`kddbench.report._grouped` and
    :func:`kddbench.report.versus_baseline` (the Markdown report's own)."""
    from .report import _grouped, _published, versus_baseline
    from .sections import matches

    grouped = _grouped(df, table, references)
    keys = list(table.rows) + list(table.columns)
    head = keys + ["mean", "± std", "n", "published", "ours − published"]
    versus = versus_baseline(df, table) if table.baseline else None
    has_baseline = versus is not None and not versus.empty
    if has_baseline:
        head += ["Δ baseline", "verdict"]
    if grouped is None:
        return head, [], []
    published = grouped["reference"].notna().any()
    if not published:  # no published number for this table: no empty columns for them
        head.remove("published")
        head.remove("ours − published")
    by_row: dict[tuple, dict[str, str]] = {}
    if has_baseline:
        for rec in versus.to_dict("records"):
            rkey = tuple(str(rec[k]) for k in table.rows)
            by_row[rkey] = {k: v for k, v in rec.items() if k not in table.rows}
    d = table.digits
    rows, classes = [], []
    for key, stats in grouped.iterrows():
        key = key if isinstance(key, tuple) else (key,)
        labels = dict(zip(keys, key))
        row: list[tuple[str, Any]] = [(str(v), None) for v in key]
        count = int(stats["count"])
        row.append(_num(stats["mean"], d))
        row.append(_num(stats["std"], d) if count > 1 else ("—", None))
        row.append((str(count), count))
        ref = stats["reference"]
        if ref is not None:
            row.append((_published(ref, d), float(ref.value)))
            row.append(_num(stats["mean"] - ref.value, d, signed=True))
        elif published:
            row += [("—", None), ("—", None)]
        is_base = bool(table.baseline) and matches(labels, table.baseline)
        if has_baseline:
            if is_base:
                row += [("—", None), ("baseline", None)]
            else:
                col = " / ".join(f"{c}={labels[c]}" for c in table.columns) if table.columns \
                    else table.metric
                text = by_row.get(tuple(str(labels[k]) for k in table.rows), {}).get(col)
                m = _VERSUS.match(str(text)) if text else None
                if m:
                    row += [_num(m.group(1), d, signed=True), (m.group(2), None)]
                else:
                    row += [("—", None), ("—", None)]
        classes.append("baseline" if is_base else "")
        rows.append(row)
    return head, rows, classes


# ---------------------------------------------------------------------------------------------
# provenance


ENV_KEYS = ("git", "torch", "device", "python", "kddbench", "platform", "torch_threads")


def provenance_html(records: Sequence[Mapping[str, Any]], ids: _Ids) -> str:
    """The environments the records were computed in, and every plugin version they used,
    with how many cells each covers."""
    if not records:
        return "<p class=\"muted\">No records yet.</p>"
    envs = Counter(tuple(str((r.get("env") or {}).get(k, "—")) for k in ENV_KEYS)
                   for r in records)
    parts = ["<h3>Where the numbers were computed</h3>",
             table_html(list(ENV_KEYS) + ["cells"],
                        [[(v, None) for v in env] + [(str(n), n)] for env, n in
                         envs.most_common()], ids)]
    versions: dict[tuple[str, str], int] = Counter()
    for r in records:
        for name, version in (r.get("versions") or {}).items():
            versions[(str(name), str(version))] += 1
    rows = []
    for (name, version), n in sorted(versions.items()):
        family, _, plugin = name.partition(":")
        rows.append([(family, None), (plugin or family, None), (version, None), (str(n), n)])
    parts += ["<h3>Plugin versions</h3>",
              "<p class=\"muted\">Every versioned part a cell names (part of each cell's "
              "identity; <code>compare</code> refuses to compare across versions).</p>",
              table_html(["family", "name", "version", "cells"], rows, ids)]
    return "\n".join(parts)


# ---------------------------------------------------------------------------------------------
# the page


def render_html(suite, df, out_dir: str | Path, records: Sequence[Mapping[str, Any]] = (),
                max_picture_bytes: int = MAX_PICTURE_BYTES) -> str:
    """The whole page of ``suite`` from its tidy results ``df`` and ``records`` (for their
    environments), with the pictures found in ``out_dir``."""
    from .report import failures, leaderboard, scope_lines, table_cells, _seeds_text
    from .report import versus_paper
    from .sections import render_sections

    out = Path(out_dir)
    pictures = Pictures(out, max_picture_bytes)
    ids = _Ids()
    body: list[str] = []
    nav: list[tuple[str, str]] = []

    def section(anchor: str, title: str) -> str:
        nav.append((anchor, title))
        return f'<h2 id="{esc(anchor)}">{esc(title)}</h2>'

    body.append(f"<h1>{esc(suite.name)}</h1>")
    if getattr(suite, "description", ""):
        body.append(markdown_to_html(suite.description.strip(), pictures, ids))
    if getattr(suite, "budget", ""):
        body.append("<p><strong>Budget used:</strong> " + _inline(suite.budget.strip()) + "</p>")
    n_cells = len(getattr(suite, "cells", []))
    if not df.empty:
        n_ok = int((df["status"] == "ok").sum())
        n_bad = len(df) - n_ok
        text = f"Cells finished: {n_ok} of the suite's {n_cells}"
        if n_bad:
            text += f" ({n_bad} failed)"
        if n_ok != n_cells:
            text += " — a partial report: <code>kddbench run</code> resumes the rest"
        if "wall_time_s" in df and df["wall_time_s"].notna().any():
            text += (f". Compute: {df['wall_time_s'].sum():.0f} s summed over cells (each "
                     "cell's wall time)")
        body.append(f"<p>{text}.</p>")
    else:
        body.append(f"<p>No finished cells yet (the suite has {n_cells}).</p>")
    body.append('<p class="muted">Derived from <a href="results.csv">results.csv</a> and '
                '<a href="leaderboard.md">leaderboard.md</a> (the source of truth); every '
                "number but the published ones was measured by these cells.</p>")
    scope = scope_lines(suite)
    if scope:
        body.append(markdown_to_html("\n".join(scope), pictures, ids))

    for table in getattr(suite, "tables", []):
        title = table.title or table.name
        body.append(section(f"table-{table.name}", title))
        if table.note:
            body.append(markdown_to_html(table.note.strip(), pictures, ids))
        seeds = sorted({c.seed for c in table_cells(suite, table)})
        body.append(f"<p>Metric: <code>{esc(table.metric)}</code>, mean ± std over the seeds "
                    f"of each entry ({esc(_seeds_text(seeds))}; n = seeds finished)."
                    + (" Baseline row: " + esc(", ".join(f"{k} = {v}" for k, v in
                                                         table.baseline.items()))
                       + "; <em>better</em>/<em>worse</em>: beyond twice the standard error "
                       "over seeds." if table.baseline else "") + "</p>")
        head, rows, classes = entry_rows(df, table, suite.references)
        if rows:
            body.append(table_html(head, rows, ids, row_classes=classes))
        else:
            body.append('<p class="muted">No finished results yet.</p>')
        wide = leaderboard(df, table, suite.references)
        if not wide.empty and len(table.columns):
            body.append("<details><summary>As in leaderboard.md (rows × columns)</summary>"
                        + table_html(list(map(str, wide.columns)),
                                     [[(str(v), None) for v in r] for r in
                                      wide.itertuples(index=False)], ids) + "</details>")
        if (out / f"plot_{table.name}.png").is_file():
            body.append(pictures.figure(f"plot_{table.name}.png", title))
        paper = versus_paper(df, table, suite.references)
        if not paper.empty:
            body.append("<p>Against the published numbers: what each difference comes "
                        "from.</p>")
            body.append(table_html(list(map(str, paper.columns)),
                                   [[(str(v), None) for v in r] for r in
                                    paper.itertuples(index=False)], ids))

    for md in render_sections(getattr(suite, "sections", []), df, suite):
        first = md.strip().splitlines()[0] if md.strip() else ""
        if first.startswith("## "):
            title = first[3:].strip()
            body.append(section(f"section-{ids.next('s')}", title))
            md = md.strip().split("\n", 1)[1] if "\n" in md.strip() else ""
        body.append(markdown_to_html(md, pictures, ids))

    history = out / HISTORY_FILE
    if history.is_file():
        body.append(section("history", "Regression history"))
        body.append(history_html(history, ids))
        pictures.shown.add(history.with_suffix(".png").name)  # drawn afresh above

    bad = failures(df)
    if not bad.empty:
        body.append(section("failed", "Failed cells"))
        rows = [[(str(v).strip().splitlines()[-1] if k == "error" and str(v).strip() else
                  str(v), None) for k, v in r.items()] for r in bad.to_dict("records")]
        body.append(table_html(list(bad.columns), rows, ids))

    protocols = sorted(set(df["protocol"])) if "protocol" in df and not df.empty else []
    if protocols:
        body.append(section("protocols", "Protocols"))
        body.append("<ul>" + "".join(
            f"<li><code>{esc(n)}</code>: " + esc(", ".join(
                f"{k}={v}" for k, v in suite.protocols.get(n, {}).items())) + "</li>"
            for n in protocols) + "</ul>")

    body.append(section("provenance", "Provenance"))
    body.append(provenance_html(records, ids))

    rest = [p for p in picture_files(out) if p not in pictures.shown]
    if rest:
        body.append(section("pictures", "Pictures"))
        body.append(f'<p class="muted">{len(rest)} more picture(s) beside the report; click one '
                    "to enlarge it.</p>")
        if len(rest) > 4:
            body.append('<div class="filter"><input type="search" data-gallery="1" '
                        'placeholder="filter pictures by name: every word must appear" '
                        'aria-label="filter pictures"></div>')
        body.append('<div id="pictures-all">')
        groups: dict[str, list[str]] = {}
        for rel in rest:
            groups.setdefault(str(Path(rel).parent), []).append(rel)
        for folder, rels in groups.items():
            if folder != ".":
                body.append(f"<h3><code>{esc(folder)}/</code></h3>")
            figs = [pictures.figure(rel, Path(rel).name) for rel in rels]
            body.append('<div class="gallery">' + "".join(
                f for f in figs if f.startswith("<figure")) + "</div>")
        body.append("</div>")
    if pictures.left_out:
        body.append(f'<p class="muted"><strong>{len(pictures.left_out)} picture(s) left out of '
                    f"this page</strong>: the pictures exceed {max_picture_bytes / 2**20:.0f} MB "
                    "in total; they are beside the report (" + esc(", ".join(
                        pictures.left_out[:5])) + (", …" if len(pictures.left_out) > 5 else "")
                    + ").</p>")

    navhtml = "<nav>" + "".join(f'<a href="#{esc(a)}">{esc(t)}</a>' for a, t in nav) + "</nav>"
    head = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(suite.name)} — kddbench</title><style>{_STYLE}</style>"
            f"<script>{_SCRIPT}</script></head><body>")
    lightbox = '<div id="lightbox" role="dialog" aria-label="picture"><img alt=""><div></div></div>'
    return head + body[0] + navhtml + "\n".join(body[1:]) + lightbox + "</body></html>\n"


def history_html(path: Path, ids: _Ids) -> str:
    """The history's figure (each gated metric over commits) and one line per entry."""
    from .history import entries_table, plot_bytes, read_history

    try:
        hist = read_history(path)
    except Exception as exc:  # a broken history file must not take the page down
        return f'<p class="muted">{esc(path.name)} could not be read: {esc(exc)}</p>'
    if hist.empty:
        return f'<p class="muted">{esc(path.name)} holds no entries yet.</p>'
    parts = [f"<p>From <code>{esc(path.name)}</code> (<code>kddbench history</code>): each "
             "gated metric over the commits it was recorded at, mean over seeds per "
             "configuration.</p>"]
    png = plot_bytes(hist)
    if png:
        src = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
        parts.append(f'<figure><img src="{src}" alt="regression history"><figcaption>'
                     "regression history</figcaption></figure>")
    entries = entries_table(hist)
    parts.append(table_html(list(map(str, entries.columns)),
                            [[(str(v), None) for v in r] for r in
                             entries.itertuples(index=False)], ids))
    return "\n".join(parts)


def write_html(suite, out_dir: str | Path, df=None,
               max_picture_bytes: int = MAX_PICTURE_BYTES) -> Path:
    """Write ``<out_dir>/index.html`` from the records of ``suite`` in ``out_dir`` (``df``:
    their tidy table when the caller has it, e.g. from :func:`kddbench.report.write_reports`)."""
    from .report import tidy
    from .store import ResultStore, atomic_write_text

    out = Path(out_dir)
    order = {c.cell_id: i for i, c in enumerate(getattr(suite, "cells", []))}
    records = [r for r in ResultStore(out).records() if r.get("cell_id") in order]
    if df is None:
        df = tidy(records)
        if not df.empty:
            df = df.sort_values("cell_id", key=lambda s: s.map(order), kind="stable")
            df = df.reset_index(drop=True)
    path = out / PAGE
    atomic_write_text(path, render_html(suite, df, out, records, max_picture_bytes))
    return path


__all__ = ["write_html", "render_html", "markdown_to_html", "MAX_PICTURE_BYTES"]

# ruff: noqa: E501 - the page's CSS, JS and HTML fragments read better unwrapped
"""``report.html``: one self-contained page per run, rendered from what FinishRun already holds.

No network at view time (inline CSS, JS and SVG; no fonts or scripts fetched), so it opens from a
file or an S3 presigned URL. The gallery lists the frames the shards' counters carry (at most
``GALLERY_MAX`` spread over the shards, streamed in as the page is written) as data, and draws one page of thumbnails at a time: images are
linked, never inlined, and load lazily. Opened from a file (a local run's OUT folder) a thumbnail
is tried at the places a local run may have drawn it (:func:`overlay_candidates`), then the
frame's URL; elsewhere the frame's URL (presigned in AWS).

Standard library only: FinishRun imports this and must stay light (no numpy, no Pillow).
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

PAGE_SIZE = 24
BINS = 10


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]], cls: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _bar(n: int, top: int, color: str) -> str:
    width = 0 if top <= 0 else max(1.0, 100.0 * n / top)
    return f'<span class="bar" style="width:{width:.1f}%;background:{_e(color)}"></span>'


def _histogram_svg(bins: Sequence[int], color: str) -> str:
    top = max(bins) or 1
    w, h, bw = 200, 60, 20
    rects = "".join(
        f'<rect x="{i * bw + 1}" y="{h - 50 * n / top:.1f}" width="{bw - 2}" height="{50 * n / top:.1f}" '
        f'fill="{_e(color)}"><title>{i / 10:.1f}-{(i + 1) / 10:.1f}: {n}</title></rect>'
        for i, n in enumerate(bins)
    )
    axis = f'<text x="0" y="{h + 10}">0</text><text x="{w - 10}" y="{h + 10}">1</text>'
    return f'<svg class="hist" viewBox="0 0 {w} {h + 12}" width="{w}" height="{h + 12}">{rects}{axis}</svg>'


def histograms(counts: Mapping[str, int]) -> dict[tuple[str, str], list[int]]:
    """``model|class|bin`` counters as ten bins per (model, class)."""
    out: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0] * BINS)
    for key, n in counts.items():
        model, name, b = key.rsplit("|", 2)
        out[(model, name)][int(b)] += int(n)
    return dict(out)


def _summary(report: Mapping[str, Any], elapsed_s: float | None) -> str:
    cost = (report.get("routing") or {}).get("review_cost") or {}
    cards = [
        ("frames found", report.get("frames_found", 0)),
        ("labeled", report.get("labeled", 0)),
        ("skipped", report.get("skipped", 0)),
        ("failed", report.get("failed", 0)),
        ("elapsed", "—" if elapsed_s is None else f"{elapsed_s:.0f} s"),
        ("review cost estimate", f"{cost.get('with_routing', 0):.2f} USD" if cost else "—"),
    ]
    html_cards = "".join(
        f'<div class="card"><div class="num">{_e(v)}</div><div class="lbl">{_e(k)}</div></div>'
        for k, v in cards
    )
    note = ""
    if cost:
        note = (
            f"<p class='note'>Review cost without routing {cost.get('without_routing', 0):.2f} USD, saved "
            f"{cost.get('saved', 0):.2f} USD ({_e(cost.get('price_source', ''))}, prices as of "
            f"{_e(cost.get('prices_as_of', ''))}; excludes {_e(cost.get('excludes', ''))}).</p>"
        )
    return f'<section id="summary"><div class="cards">{html_cards}</div>{note}</section>'


def _classes(report: Mapping[str, Any], colors: Mapping[str, str]) -> str:
    counts = report.get("objects_per_class") or {}
    top = max(counts.values(), default=0)
    rows = [
        [f'<span class="swatch" style="background:{_e(colors.get(k, "#888"))}"></span>{_e(k)}', n,
         _bar(n, top, colors.get(k, "#888"))]
        for k, n in sorted(counts.items(), key=lambda t: -t[1])
    ]  # fmt: skip
    dropped = report.get("dropped_detections") or {}
    extra = ""
    if dropped:
        extra = (
            f"<details><summary>Detections dropped ({sum(dropped.values())}: below threshold or unmapped)</summary>"
            + _table(["why", "count"], [[_e(k), v] for k, v in dropped.items()])
            + "</details>"
        )
    return f'<section id="classes"><h2>Objects per class</h2>{_table(["class", "objects", ""], rows, "bars")}{extra}</section>'


def _scores(hist: Mapping[tuple[str, str], list[int]], colors: Mapping[str, str]) -> str:
    if not hist:
        return '<section id="scores"><h2>Scores</h2><p>No machine pre-labels.</p></section>'
    cells = "".join(
        f'<figure class="histo" data-model="{_e(m)}" data-class="{_e(c)}">{_histogram_svg(b, colors.get(c, "#888"))}'
        f"<figcaption>{_e(c)} · {_e(m)} · {sum(b)}</figcaption></figure>"
        for (m, c), b in sorted(hist.items(), key=lambda t: (t[0][0], -sum(t[1])))
    )
    return f'<section id="scores"><h2>Pre-label scores per class and model</h2><div class="grid">{cells}</div></section>'


def _routing(report: Mapping[str, Any]) -> str:
    routing = report.get("routing") or {}
    frames = routing.get("frames") or {}
    total = sum(frames.get(k, 0) for k in ("auto", "verify", "adjust")) or 1
    palette = {"auto": "#2e7d32", "verify": "#f9a825", "adjust": "#c62828"}
    bar = "".join(
        f'<span style="width:{100 * frames.get(k, 0) / total:.1f}%;background:{c}" title="{k}: {frames.get(k, 0)}"></span>'
        for k, c in palette.items()
    )
    rows = [
        [_e(k), frames.get(k, 0), routing.get("objects", {}).get(k, "")] for k in ("auto", "verify", "adjust")
    ]
    rows.append(["audit sample (auto-accepted, sent to people)", frames.get("audit", 0), ""])
    by = [[_e(k), v] for k, v in (routing.get("labeled_by") or {}).items()]
    review = report.get("review")
    status = review.get("status") if isinstance(review, dict) else review
    audit = review.get("audit") if isinstance(review, dict) else None
    audit_text = (
        f"<p>Audit: {audit['frames']} frames, {audit['adjusted']} adjusted by people.</p>" if audit else ""
    )
    return (
        f'<section id="routing"><h2>Routing</h2><div class="split">{bar}</div>'
        f"{_table(['route', 'frames', 'objects'], rows)}{audit_text}<h3>Labeled by</h3>"
        f"{_table(['who', 'frames'], by)}<p>Review: {_e(status)}</p></section>"
    )


def _scorecard(card: Mapping[str, Any] | None) -> str:
    if not card:
        return '<section id="scorecard"><h2>Reviewer scorecard</h2><p>No frame was adjusted by a person.</p></section>'
    keys = ("prelabels", "kept", "moved", "deleted", "added", "relabeled", "acceptance")
    rows = [["all", *[_e(card["total"].get(k)) for k in keys]]]
    rows += [[f"class: {_e(n)}", *[_e(t.get(k)) for k in keys]] for n, t in card.get("by_class", {}).items()]
    rows += [[f"model: {_e(n)}", *[_e(t.get(k)) for k in keys]] for n, t in card.get("by_model", {}).items()]
    return (
        f'<section id="scorecard"><h2>Reviewer scorecard ({card.get("frames", 0)} frames)</h2>'
        f"{_table(['', *keys], rows)}</section>"
    )


def _failures(report: Mapping[str, Any]) -> str:
    rows = [
        [_e(f["reason"]), f["frames"], "<br>".join(_e(x) for x in f.get("examples", []))]
        for f in report.get("failures") or []
    ]
    skips = [[_e(k), v] for k, v in (report.get("skips") or {}).items()]
    body = _table(["reason", "frames", "examples"], rows) if rows else "<p>No frame failed.</p>"
    if skips:
        body += "<h3>Skipped</h3>" + _table(["reason", "objects"], skips)
    return f'<section id="failures"><h2>Failures</h2>{body}</section>'


def overlay_candidates(frame: str) -> list[str]:
    """Where a local run's overlay of the frame may be, under ``overlays/``: the frame's path in the
    input folder (a relative name, or the URI's key less its leading prefix segments), then
    ``<stem>.jpg``."""
    if "://" in frame:
        parts = frame.split("://", 1)[1].split("/")[1:]  # the key's segments, after the bucket
        found = ["/".join(parts[i:]) for i in range(1, len(parts))]
    else:
        found = [frame]
    found.append(frame.rsplit("/", 1)[-1].rsplit(".", 1)[0] + ".jpg")
    return list(dict.fromkeys(c for c in found if c))


def gallery_entry(entry: Mapping[str, Any], url: str) -> dict[str, Any]:
    frame = str(entry["frame"])
    return {
        "f": frame,
        "u": url,
        "o": overlay_candidates(frame),
        "r": entry.get("route", ""),
        "a": bool(entry.get("audit")),
        "c": list(entry.get("classes") or []),
        "s": entry.get("min_score"),
        "n": entry.get("objects", 0),
        "b": entry.get("labeled_by", ""),
    }


_CSS = """
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0;color:#1d2330;background:#f4f6f9}
header{background:#1d2330;color:#fff;padding:14px 24px}header h1{margin:0;font-size:20px}
header .sub{opacity:.75;font-size:13px}main{padding:8px 24px 40px;max-width:1400px}
section{background:#fff;border-radius:8px;padding:12px 18px;margin:14px 0;box-shadow:0 1px 2px #0002}
h2{font-size:16px;margin:4px 0 10px}h3{font-size:14px;margin:12px 0 6px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#eef2f7;border-radius:6px;padding:8px 14px;min-width:120px}
.card .num{font-size:22px;font-weight:600}.card .lbl{color:#556;font-size:12px}.note{color:#556;font-size:12px}
table{border-collapse:collapse;font-size:13px}th,td{text-align:left;padding:3px 10px;border-bottom:1px solid #e3e7ee}
table.bars td:last-child{width:320px}.bar{display:inline-block;height:10px;border-radius:2px}
.swatch{display:inline-block;width:11px;height:11px;border-radius:2px;margin-right:6px;vertical-align:-1px}
.grid{display:flex;flex-wrap:wrap;gap:10px}.histo{margin:0;background:#f8f9fb;padding:6px;border-radius:6px}
.histo figcaption{font-size:12px;color:#445}.hist text{font-size:9px;fill:#667}
.split{display:flex;height:18px;border-radius:4px;overflow:hidden;margin-bottom:8px;background:#eee}
.filters{display:flex;gap:14px;flex-wrap:wrap;align-items:center;margin-bottom:10px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(260px,1fr));gap:10px}
.tile{background:#f8f9fb;border-radius:6px;overflow:hidden;font-size:12px}
.tile img{width:100%;height:150px;object-fit:cover;background:#dde;display:block}
.tile .meta{padding:4px 8px}.tile .name{font-weight:600;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.pill{display:inline-block;padding:0 6px;border-radius:8px;color:#fff;font-size:11px;margin-right:3px}
.pager{margin-top:10px;display:flex;gap:10px;align-items:center}button{padding:3px 12px}
"""

_JS = """
(function(){
const D=JSON.parse(document.getElementById('gallery-data').textContent);
const PAGE=%(page)d, COLORS=%(colors)s, ROUTE={auto:'#2e7d32',verify:'#f9a825',adjust:'#c62828'};
const local=location.protocol==='file:';
const $=id=>document.getElementById(id);
let page=0, shown=D;
function src(e){return local?'overlays/'+e.o[0]:e.u;}
function apply(){
  const c=$('f-class').value, r=$('f-route').value;
  const lo=parseFloat($('f-min').value||'0'), hi=parseFloat($('f-max').value||'1');
  shown=D.filter(e=>(!c||e.c.includes(c))&&(!r||(r==='audit'?e.a:e.r===r))&&
    (e.s===null||e.s===undefined?lo<=0:(e.s>=lo&&e.s<=hi)));
  page=0; draw();
}
function draw(){
  const pages=Math.max(1,Math.ceil(shown.length/PAGE)); page=Math.min(page,pages-1);
  const grid=$('tiles'); grid.textContent='';
  for(const e of shown.slice(page*PAGE,(page+1)*PAGE)){
    const t=document.createElement('div'); t.className='tile';
    const a=document.createElement('a'); a.href=src(e); a.target='_blank';
    const img=document.createElement('img'); img.loading='lazy'; img.alt=e.f; img.src=src(e);
    let next=1;
    if(local) img.onerror=function(){
      if(next<e.o.length){this.src='overlays/'+e.o[next++];}
      else if(next++===e.o.length&&!e.u.startsWith('s3:')){this.src=e.u;}
    };
    a.appendChild(img); t.appendChild(a);
    const m=document.createElement('div'); m.className='meta';
    const n=document.createElement('div'); n.className='name'; n.textContent=e.f.split('/').pop(); n.title=e.f; m.appendChild(n);
    const p=document.createElement('div');
    const rp=document.createElement('span'); rp.className='pill'; rp.style.background=ROUTE[e.r]||'#555';
    rp.textContent=e.r+(e.a?' (audit)':''); p.appendChild(rp);
    for(const c of e.c){const s=document.createElement('span'); s.className='pill'; s.style.background=COLORS[c]||'#777'; s.textContent=c; p.appendChild(s);}
    m.appendChild(p);
    const i=document.createElement('div');
    i.textContent=e.n+' objects · lowest score '+(e.s===null||e.s===undefined?'—':e.s.toFixed(2))+' · '+e.b;
    m.appendChild(i); t.appendChild(m); grid.appendChild(t);
  }
  $('page').textContent='page '+(page+1)+' of '+pages+' · '+shown.length+' of '+D.length+' frames';
  $('prev').disabled=page===0; $('next').disabled=page>=pages-1;
}
for(const c of [...new Set(D.flatMap(e=>e.c))].sort()){const o=document.createElement('option'); o.value=c; o.textContent=c; $('f-class').appendChild(o);}
for(const id of ['f-class','f-route','f-min','f-max']) $(id).addEventListener('change',apply);
$('prev').onclick=()=>{page--;draw();}; $('next').onclick=()=>{page++;draw();};
apply();
})();
"""


def _gallery(entries: Iterable[Mapping[str, Any]], count: int, labeled: int) -> Iterator[str]:
    """The gallery section, its data streamed entry by entry (the class filter's options are
    filled from the data by the page's script)."""
    routes = "".join(f'<option value="{r}">{r}</option>' for r in ("auto", "verify", "adjust", "audit"))
    sample = (
        f"<p class='note'>The gallery lists {count} of the {labeled} labeled frames "
        "(spread evenly over the run); every frame is in the dataset and the frame reports.</p>"
        if count < labeled
        else ""
    )
    yield (
        '<section id="gallery"><h2>Gallery</h2>'
        '<div class="filters"><label>class <select id="f-class"><option value="">all</option>'
        f'</select></label><label>route <select id="f-route"><option value="">all</option>{routes}'
        '</select></label><label>lowest score from <input id="f-min" type="number" min="0" max="1" '
        'step="0.05" value="0" size="4"></label><label>to <input id="f-max" type="number" min="0" max="1" '
        f'step="0.05" value="1" size="4"></label></div>{sample}<div id="tiles" class="tiles"></div>'
        '<div class="pager"><button id="prev">‹ previous</button><span id="page"></span>'
        '<button id="next">next ›</button></div>'
        '<script type="application/json" id="gallery-data">['
    )
    sep = ""
    for entry in entries:
        yield sep + json.dumps(entry, separators=(",", ":")).replace("</", "<\\/")
        sep = ","
    yield "]</script></section>"


def render_report(
    report: Mapping[str, Any],
    *,
    score_histogram: Mapping[str, int],
    gallery: Sequence[Mapping[str, Any]],
    image_url: Callable[[str], str],
    colors: Mapping[str, str],
    elapsed_s: float | None = None,
) -> str:
    """The page: summary, classes, score histograms, routing, scorecard, failures, gallery."""
    labeled = [e for e in gallery if e.get("status") == "labeled"]
    return "".join(
        render_report_chunks(
            report,
            score_histogram=score_histogram,
            gallery=labeled,
            gallery_count=len(labeled),
            image_url=image_url,
            colors=colors,
            elapsed_s=elapsed_s,
        )
    )


def render_report_chunks(
    report: Mapping[str, Any],
    *,
    score_histogram: Mapping[str, int],
    gallery: Iterable[Mapping[str, Any]],
    gallery_count: int,
    image_url: Callable[[str], str],
    colors: Mapping[str, str],
    elapsed_s: float | None = None,
) -> Iterator[str]:
    """The page as it streams: everything but the gallery's data first, then the gallery's entries
    as ``gallery`` yields them (``gallery_count`` of them, the labeled ones shown), so a run's page
    is written without holding its gallery."""
    entries = (gallery_entry(e, image_url(str(e["frame"]))) for e in gallery if e.get("status") == "labeled")
    hist = histograms(score_histogram)
    js = _JS % {"page": PAGE_SIZE, "colors": json.dumps(dict(colors)).replace("</", "<\\/")}
    title = f"Run {report.get('run_id', '')}"
    yield (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; img-src * data: file:; '
        "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1><div class='sub'>profile {_e(report.get('profile', ''))} · "
        f"status {_e(report.get('status', ''))}</div></header><main>"
        f"{_summary(report, elapsed_s)}{_classes(report, colors)}{_scores(hist, colors)}{_routing(report)}"
        f"{_scorecard(report.get('scorecard'))}{_failures(report)}"
    )
    yield from _gallery(entries, gallery_count, int(report.get("labeled", 0)))
    yield f"</main><script>{js}</script></body></html>"

"""The HTML report: a treemap of the model, its summary as a collapsible tree, and explanations.

One self-contained element (no network: no fonts, scripts or styles from elsewhere) that works
as a page opened from disk and inside a notebook. Every style rule is scoped to the report's
root element, and the script only touches elements inside it, so nothing around the report
changes. Without scripts the treemap, table and totals still show; the script adds the metric
and colour switches, collapsing, the filter and the explanation shown on a click. A page
opened as ``report.html#module=transformer.h.0.attn`` shows that module's explanation.

Formats a finished :class:`~paramscope.analysis.view.ReportView` and
:class:`~paramscope.analysis.treemap.TreemapView`; computes nothing.
"""

from __future__ import annotations

import json
import uuid
from html import escape

from paramscope.analysis.treemap import METRICS, TreemapView
from paramscope.analysis.view import ReportView, Row
from paramscope.render import fmt
from paramscope.render.html import ROOT_CLASS
from paramscope.render.summary import totals_lines
from paramscope.render.treemap import treemap_svg

__all__ = ["render_report_fragment", "render_report_page"]

_CSS = """
{r}{--fg:#1f2328;--bg:#fff;--muted:#59636e;--line:#d1d9e0;--hover:#f6f8fa;--accent:#0969da;
--trainable:#4c9be8;--frozen:#9aa7b4;--statistic:#e8a33c;--buffer:#b57edc;--unknown:#d9534f;--compute:#3fb68b;
font-family:system-ui,-apple-system,"Segoe UI",sans-serif;color:var(--fg);background:var(--bg);line-height:1.4;
font-size:14px;padding:8px 0}
@media (prefers-color-scheme:dark){{r}{--fg:#e6edf3;--bg:#0d1117;--muted:#9198a1;--line:#3d444d;--hover:#161b22;
--accent:#4493f8;--trainable:#3b82c4;--frozen:#6b7785;--statistic:#c98a2c;--buffer:#9466b8;--unknown:#c0443f;
--compute:#2f9c75}}
{r} h1{font-size:1.3em;margin:0 0 .3em}
{r} .totals{margin:.2em 0 .6em;padding:0;list-style:none;color:var(--muted)}
{r} .controls{display:flex;flex-wrap:wrap;gap:.4em;align-items:center;margin:.4em 0}
{r} button{font:inherit;border:1px solid var(--line);background:var(--bg);color:var(--fg);border-radius:4px;
padding:.1em .6em;cursor:pointer}
{r} button[aria-pressed=true]{background:var(--accent);color:#fff;border-color:var(--accent)}
{r} button:disabled{opacity:.5;cursor:not-allowed}
{r} .legend span{display:inline-block;margin-right:.8em;color:var(--muted)}
{r} .legend i{display:inline-block;width:.8em;height:.8em;margin-right:.3em;vertical-align:-1px;border-radius:2px}
{r} .maps svg{display:block;width:100%;height:auto;max-height:70vh;border:1px solid var(--line)}
{r} .maps svg[hidden]{display:none}
{r} rect.module{fill:none;stroke:var(--line);stroke-width:1}
{r} rect.leaf{stroke:var(--bg);stroke-width:.5;cursor:pointer;fill:var(--unknown)}
{r} rect.leaf:hover,{r} rect.module.sel{stroke:var(--fg);stroke-width:1.5}
{r} rect.leaf[data-role=trainable]{fill:var(--trainable)}
{r} rect.leaf[data-role=frozen]{fill:var(--frozen)}
{r} rect.leaf[data-role=statistic]{fill:var(--statistic)}
{r} rect.leaf[data-role=buffer]{fill:var(--buffer)}
{r} rect.leaf[data-role=compute],{r} rect.leaf.top{fill:var(--compute)}
{r} text.label{font-size:10px;fill:var(--fg);pointer-events:none}
{r} .panel{border:1px solid var(--line);border-radius:4px;padding:.4em .8em;margin:.6em 0;min-height:2em}
{r} .panel table,{r} table.tree{border-collapse:collapse;width:100%}
{r} th,{r} td{padding:.15em .5em;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
{r} td.n,{r} th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
{r} tr.row:hover{background:var(--hover)}
{r} tr.row{cursor:pointer}
{r} tr.row[hidden]{display:none}
{r} .tog{border:none;background:none;padding:0 .3em;width:1.6em;color:var(--muted)}
{r} .mark{font-size:.85em;color:var(--muted);margin-left:.4em}
{r} .mark.tied{color:var(--statistic)}
{r} input.filter{font:inherit;padding:.15em .4em;border:1px solid var(--line);border-radius:4px;
background:var(--bg);color:var(--fg);min-width:16em}
{r} .notes{color:var(--muted);padding-left:1.2em}
{r} .why{color:var(--muted)}
"""

_SCRIPT = """
(function(){
var root=document.getElementById(%(id)s);if(!root)return;
var errors=0;window.addEventListener('error',function(){errors++;root.setAttribute('data-errors',errors);});
var data=JSON.parse(root.querySelector('script.psr-data').textContent);
function q(s){return root.querySelectorAll(s);}
function esc(t){var d=document.createElement('span');d.textContent=t;return d.innerHTML;}
var palette=['#4c9be8','#e8a33c','#3fb68b','#b57edc','#d9534f','#8c6d31','#17becf','#9aa7b4'];
function colour(by){var seen={},n=0;q('rect.leaf').forEach(function(r){
 if(by==='dtype'){var k=r.getAttribute('data-dtype')||'';if(!(k in seen))seen[k]=palette[n++%%palette.length];
 r.style.fill=seen[k];}else{r.style.fill='';}});
 var lg=root.querySelector('.legend');lg.querySelectorAll('.role').forEach(function(e){e.hidden=by!=='role';});
 lg.querySelectorAll('.dt').forEach(function(e){e.remove();});
 if(by==='dtype'){Object.keys(seen).forEach(function(k){var s=document.createElement('span');s.className='dt';
 s.innerHTML='<i style="background:'+seen[k]+'"></i>'+esc(k||'compute');lg.appendChild(s);});}}
q('button[data-metric]').forEach(function(b){b.addEventListener('click',function(){
 q('button[data-metric]').forEach(function(x){x.setAttribute('aria-pressed',x===b);});
 q('.maps svg').forEach(function(s){s.hidden=s.getAttribute('data-metric')!==b.getAttribute('data-metric');});});});
q('button[data-colour]').forEach(function(b){b.addEventListener('click',function(){
 q('button[data-colour]').forEach(function(x){x.setAttribute('aria-pressed',x===b);});colour(b.getAttribute('data-colour'));});});
var panel=root.querySelector('.panel');
function show(i){var l=data.layers[i];if(!l)return;
 var h='<b>'+esc(l.path||l.name)+'</b> ('+esc(l.type)+')'+(l.formula?': '+esc(l.params)+' = '+esc(l.formula):'');
 if(l.note)h+='<div class="why">'+esc(l.note)+'</div>';
 if(l.tensors.length){h+='<table><thead><tr><th>tensor</th><th>shape</th><th>dtype</th><th class="n">count</th>'+
 '<th>formula</th><th>role</th><th>why</th></tr></thead><tbody>';
 l.tensors.forEach(function(t){h+='<tr><td>'+esc(t[0])+'</td><td>'+esc(t[1])+'</td><td>'+esc(t[2])+'</td><td class="n">'+
 esc(t[3])+'</td><td>'+esc(t[4])+'</td><td>'+esc(t[5])+'</td><td class="why">'+esc(t[6])+'</td></tr>';});
 h+='</tbody></table>';}else{h+='<div class="why">no tensors of its own</div>';}
 panel.innerHTML=h;q('rect.module.sel').forEach(function(r){r.classList.remove('sel');});
 q('rect.module[data-i="'+i+'"]').forEach(function(r){r.classList.add('sel');});}
q('rect[data-i]').forEach(function(r){r.addEventListener('click',function(){show(+r.getAttribute('data-i'));});});
var rows=Array.prototype.slice.call(q('tr.row'));
function descendants(k){var d=+rows[k].getAttribute('data-depth'),out=[];
 for(var j=k+1;j<rows.length&&+rows[j].getAttribute('data-depth')>d;j++)out.push(j);return out;}
rows.forEach(function(tr,k){tr.addEventListener('click',function(ev){
 if(ev.target.classList.contains('tog')){var open=ev.target.getAttribute('aria-expanded')==='true';
 ev.target.setAttribute('aria-expanded',!open);ev.target.textContent=open?'\\u25b8':'\\u25be';
 var d=+tr.getAttribute('data-depth');descendants(k).forEach(function(j){
 if(open){rows[j].hidden=true;}else if(+rows[j].getAttribute('data-depth')===d+1){rows[j].hidden=false;
 var t=rows[j].querySelector('.tog');if(t){t.setAttribute('aria-expanded','false');t.textContent='\\u25b8';}}});
 return;}show(+tr.getAttribute('data-i'));});});
root.querySelector('input.filter').addEventListener('input',function(){var f=this.value.toLowerCase();
 if(!f){rows.forEach(function(tr){tr.hidden=+tr.getAttribute('data-depth')>0&&tr.getAttribute('data-start')!=='1';});return;}
 var keep={};rows.forEach(function(tr,k){if(tr.textContent.toLowerCase().indexOf(f)>=0){keep[k]=1;
 var d=+tr.getAttribute('data-depth');for(var j=k-1;j>=0&&d>0;j--){var dj=+rows[j].getAttribute('data-depth');
 if(dj<d){keep[j]=1;d=dj;}}}});rows.forEach(function(tr,k){tr.hidden=!keep[k];});});
var m=/[#&]module=([^&]*)/.exec(location.hash);
if(m){var want=decodeURIComponent(m[1]);data.layers.forEach(function(l,i){if(l.path===want)show(i);});}
root.setAttribute('data-ready','1');root.setAttribute('data-errors',errors);
})();
"""

_ROLES = (("trainable", "trainable"), ("frozen", "frozen"), ("statistic", "running statistic"),
          ("buffer", "buffer"), ("unknown", "unknown role"), ("compute", "FLOPs"))


def _json_for_script(doc: object) -> str:
    # Inside <script>, "</script" would end the element and "<!--" change how it is parsed: no
    # "<", ">" or "&" is left in the text at all (JSON reads the \\u escapes back as the same
    # characters); ensure_ascii also escapes U+2028/9, which end a line in older JavaScript.
    text = json.dumps(doc, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _layers_json(view: ReportView) -> dict[str, object]:
    layers = []
    for lv in view.layers:
        tensors = [
            [t.name, fmt.shape(t.shape), t.dtype, fmt.count(t.count),
             t.formula.numeric if t.formula else "", t.role.value + ("" if t.raw.is_param else ", buffer"),
             t.why + (f" Shared with {', '.join(t.shared_with)}." if t.shared_with else "")]
            for t in lv.tensors
        ]  # fmt: skip
        layers.append({"name": lv.name, "path": lv.path, "type": lv.type, "formula": lv.formula,
                       "params": fmt.count(lv.totals.params), "note": lv.note, "tensors": tensors})
    return {"layers": layers}


def _row(row: Row, index: int, has_children: bool, start: bool) -> str:
    lv = row.layer
    name = f"{escape(row.label)} <span class=\"mark\">{escape(lv.type)}</span>" if lv.type else escape(row.label)
    marks = []
    if row.repeat > 1:
        marks.append(f"x{row.repeat}")
    if row.each:
        marks.append("each")
    if lv.calls == 0:
        marks.append("not called")
    elif lv.calls > 1:
        marks.append(f"called {lv.calls}x")
    if not lv.known:
        marks.append("no rule")
    tied = ""
    if row.tied:
        owners = ", ".join(escape(owner) for _, owner in row.tied)
        tied = f'<span class="mark tied" title="one storage, counted where first owned">tied to {owners}</span>'
    mark = "".join(f'<span class="mark">{escape(m)}</span>' for m in marks) + tied
    tog = '<button class="tog" aria-expanded="false" title="expand">\u25b8</button>' if has_children else (
        '<span class="tog"></span>')
    t = row.totals
    c = row.compute
    cells = [fmt.count(t.params), fmt.count(t.trainable), fmt.count(t.non_trainable), fmt.count(t.buffers),
             fmt.n_bytes(t.n_bytes), fmt.si(c.flops) if c is not None else "?"]
    pad = f' style="padding-left:{0.2 + 1.2 * row.depth:.1f}em"' if row.depth else ""
    hidden = "" if start else " hidden"
    return (
        f'<tr class="row" data-i="{index}" data-depth="{row.depth}" data-path="{escape(lv.path)}"'
        f' data-start="{int(start)}"{hidden}><td{pad}>{tog}{name}{mark}</td><td>{escape(fmt.shapes(lv.output_shapes))}</td>'
        + "".join(f'<td class="n">{escape(x)}</td>' for x in cells)
        + f"<td>{escape(lv.formula)}</td></tr>"
    )


def render_report_fragment(view: ReportView, tm: TreemapView) -> str:
    """The report as one element with its scoped style and script: what a notebook shows.

    Example:
        >>> from paramscope.analysis.treemap import build_treemap
        >>> from paramscope.analysis.view import build_view
        >>> from paramscope.core import Anatomy, Layer, Tensor
        >>> v = build_view(Anatomy("m", "torch", (Layer("fc", "Linear", "fc", (Tensor("weight", (4, 8)),)),)))
        >>> html = render_report_fragment(v, build_treemap(v))
        >>> html.startswith('<div class="paramscope-report psr" id="psr-'), html.count('class="leaf"')
        (True, 2)
    """
    uid = f"psr-{uuid.uuid4().hex[:12]}"  # unique among the reports of one notebook
    scope = f"#{uid}"
    css = _CSS.replace("{r}", scope)
    index = {id(lv): i for i, lv in enumerate(view.layers)}
    totals = "".join(f"<li>{escape(line)}</li>" for line in totals_lines(view))
    buttons = []
    for key, meaning in METRICS.items():
        off = key == "flops" and not tm.has_flops
        title = "FLOPs were not measured for this source" if off else meaning
        pressed = "true" if key == "params" else "false"
        buttons.append(f'<button data-metric="{key}" aria-pressed="{pressed}" title="{escape(title)}"'
                       f'{" disabled" if off else ""}>{key}</button>')
    legend = "".join(f'<span class="role"><i style="background:var(--{k})"></i>{escape(v)}</span>' for k, v in _ROLES)
    maps = []
    for key in METRICS:
        if key == "flops" and not tm.has_flops:
            continue
        svg = treemap_svg(tm, key)
        maps.append(svg if key == "params" else svg.replace("<svg ", "<svg hidden ", 1))
    rows = []
    for k, row in enumerate(view.rows):
        has_children = k + 1 < len(view.rows) and view.rows[k + 1].depth > row.depth
        rows.append(_row(row, index[id(row.layer)], has_children, row.depth == 0))
    head = "".join(
        f'<th class="{"n" if n else ""}">{h}</th>'
        for h, n in (("Layer (type)", 0), ("Output shape", 0), ("Params", 1), ("Trainable", 1),
                     ("Non-trainable", 1), ("Buffers", 1), ("Bytes", 1), ("FLOPs", 1), ("Formula", 0))
    )
    return (
        f'<div class="{ROOT_CLASS} psr" id="{uid}" data-ready="0" data-errors="0"><style>{css}</style>'
        f"<h1>{escape(view.name)} <span class=\"mark\">{escape(view.framework)}</span></h1>"
        f'<ul class="totals">{totals}</ul>'
        f'<div class="controls">area: {"".join(buttons)} &nbsp; colour: '
        '<button data-colour="role" aria-pressed="true">role</button>'
        '<button data-colour="dtype" aria-pressed="false">dtype</button>'
        f'<span class="legend">{legend}</span></div>'
        f'<div class="maps">{"".join(maps)}</div>'
        '<div class="panel" aria-live="polite">Click a module in the treemap or the table to see its tensors.</div>'
        '<div class="controls"><input class="filter" type="search" placeholder="filter layers by name or type"></div>'
        f'<table class="tree"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
        f'<script type="application/json" class="psr-data">{_json_for_script(_layers_json(view))}</script>'
        f"<script>{_SCRIPT % {'id': json.dumps(uid)}}</script></div>"
    )


def render_report_page(fragment: str, title: str) -> str:
    """A complete, standalone HTML page holding a report made by :func:`render_report_fragment`."""
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{escape(title)} - paramscope</title></head>\n"
        f'<body style="margin:1.5em">{fragment}</body></html>\n'
    )

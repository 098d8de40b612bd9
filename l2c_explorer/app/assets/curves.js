// Live training curves (plotly.js): one chart per series, side by side, redrawn in place when new points
// arrive, so zoom and the page do not jump; and, for a discovery, the spectrum the number of categories
// was read from. Runs as gr.HTML js_on_load; the data is JSON in props.value (views.curves_json):
// {series: [{key, title, color, stage?, id?, reference?}], x, x_title, points: [...], spectrum: {...}|null}.
// A chart appears with its first point: no empty axes before a run has anything to show.
const root = element.querySelector(".l2c-curves");
const empty = element.querySelector(".l2c-curves-empty");

function parse() {
  if (!props.value) return null;
  try { return JSON.parse(props.value); } catch (e) { return null; }
}

function chart(key) {
  let div = root.querySelector(`[data-series="${key}"]`);
  if (!div) {
    div = document.createElement("div");
    div.className = "l2c-curve";
    div.dataset.series = key;
    div.dataset.points = "0";
    div.style.display = "none";
    root.appendChild(div);
  }
  return div;
}

// No toolbar, and nothing that could send a chart out (the keys map.js sets too, see there); the wheel
// scrolls the page.
const CONFIG = { displaylogo: false, displayModeBar: false, scrollZoom: false, showSendToCloud: false,
  plotlyServerURL: "", showLink: false, showEditInChartStudio: false, showSources: false };

// Plotly sizes a chart from its box: it must be visible (and laid out) before it is drawn, or it takes a
// default width and spills over its neighbour.
function show(div, traces, layout) {
  div.style.display = "";
  const width = div.clientWidth;
  if (!width) return false;  // not on screen (another tab): drawn when it shows, see the ResizeObserver
  layout.width = width;
  Plotly.react(div, traces, layout, CONFIG);
  return true;
}

function hide(div) {
  div.style.display = "none";
  div.dataset.points = "0";
}

function baseLayout(title, xTitle) {
  return {
    title: { text: title, font: { size: 13 } }, margin: { l: 45, r: 10, t: 30, b: 38 }, height: 230,
    xaxis: { title: { text: xTitle, font: { size: 11 } } }, showlegend: false, uirevision: "keep",
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
  };
}

function seriesPoints(d, s) {
  return d.points.filter(p => p[s.key] !== undefined && p[s.key] !== null && (!s.stage || p.stage === s.stage));
}

function drawSeries(d, s, pts) {
  const div = chart(s.id || s.key);
  const traces = [{
    x: pts.map(p => p[d.x]), y: pts.map(p => p[s.key]), type: "scatter", mode: pts.length > 60 ? "lines" : "lines+markers",
    line: { color: s.color || "#1f77b4", width: 2 }, marker: { size: 4 }, name: s.title,
    hovertemplate: `${d.x_title} %{x}<br>${s.title} %{y}<extra></extra>`,
  }];
  if (s.reference !== undefined && s.reference !== null) {
    traces.push({ x: [pts[0][d.x], pts[pts.length - 1][d.x]], y: [s.reference, s.reference], type: "scatter",
      mode: "lines", line: { color: "#888", dash: "dot", width: 1 }, name: s.reference_title || "reference",
      hoverinfo: "skip" });
  }
  if (!show(div, traces, baseLayout(s.title, d.x_title))) return;
  div.dataset.points = String(pts.length);
  div.dataset.last = String(pts[pts.length - 1][s.key]);
}

function drawSpectrum(sp) {
  const div = chart("spectrum");
  const n = sp.eigenvalues.length;
  const idx = sp.eigenvalues.map((_, i) => i + 1);
  const colours = idx.map(i => (i <= sp.k ? "#d62728" : "#9aa5b1"));
  const traces = [{
    x: idx, y: sp.eigenvalues, type: "scatter", mode: "lines+markers", name: "eigenvalue",
    line: { color: "#9aa5b1", width: 1 }, marker: { size: 6, color: colours },
    hovertemplate: "eigenvalue %{x}: %{y:.3f}<extra></extra>",
  }];
  const lo = Math.min(...sp.eigenvalues), hi = Math.max(...sp.eigenvalues);
  const shapes = [{ type: "line", x0: sp.k + 0.5, x1: sp.k + 0.5, y0: lo, y1: hi, line: { color: "#d62728", width: 2, dash: "dash" } }];
  const annotations = [{ x: sp.k + 0.5, y: hi, text: `K = ${sp.k}`, showarrow: false, xanchor: "left", yanchor: "top",
    font: { color: "#d62728", size: 12 } }];
  if (sp.k_given && sp.k_eigengap !== sp.k) {
    shapes.push({ type: "line", x0: sp.k_eigengap + 0.5, x1: sp.k_eigengap + 0.5, y0: lo, y1: hi,
      line: { color: "#9467bd", width: 1, dash: "dot" } });
  }
  if (sp.k_true) {
    shapes.push({ type: "line", x0: sp.k_true + 0.5, x1: sp.k_true + 0.5, y0: lo, y1: hi, line: { color: "#555", width: 1, dash: "dot" } });
    annotations.push({ x: sp.k_true + 0.5, y: lo, text: `true: ${sp.k_true}`, showarrow: false, xanchor: "left", yanchor: "bottom",
      font: { color: "#555", size: 11 } });
  }
  const layout = baseLayout(sp.title, "eigenvalue, largest first");
  layout.shapes = shapes;
  layout.annotations = annotations;
  layout.xaxis.range = [0, n + 1];
  if (!show(div, traces, layout)) return;
  div.dataset.points = String(n);
  div.dataset.k = String(sp.k);
  div.title = sp.note;
}

function draw() {
  const d = parse();
  const note = element.querySelector(".l2c-spectrum-note");
  if (!d) {
    root.querySelectorAll("[data-series]").forEach(hide);
    root.dataset.points = "0";
    empty.style.display = "";
    note.textContent = "";
    return;
  }
  const ids = new Set(d.series.map(s => s.id || s.key));
  ids.add("spectrum");
  root.querySelectorAll("[data-series]").forEach(div => { if (!ids.has(div.dataset.series)) div.remove(); });
  // Which charts have something to show: all of them are shown (or hidden) before any is drawn, so that each
  // is drawn at the width it keeps.
  const plan = d.series.map(s => [s, seriesPoints(d, s)]);
  plan.forEach(([s, pts]) => { const div = chart(s.id || s.key); if (pts.length) div.style.display = ""; else hide(div); });
  const spectrum = chart("spectrum");
  if (d.spectrum) spectrum.style.display = ""; else hide(spectrum);
  plan.forEach(([s, pts]) => { if (pts.length) drawSeries(d, s, pts); });
  if (d.spectrum) drawSpectrum(d.spectrum);
  note.textContent = d.spectrum ? d.spectrum.note : "";
  const anything = plan.some(([, pts]) => pts.length) || !!d.spectrum;
  empty.style.display = anything ? "none" : "";
  root.dataset.points = String(d.points.length);
}

// Charts drawn while hidden (another tab) or before the layout settled are drawn again at their new size.
let pending = null;
const resizer = new ResizeObserver(() => {
  clearTimeout(pending);
  pending = setTimeout(() => {
    if (typeof Plotly === "undefined") return;
    const stale = Array.from(root.querySelectorAll("[data-series]")).some(div => div.style.display !== "none" &&
      div.clientWidth && (!div._fullLayout || Math.abs(div._fullLayout.width - div.clientWidth) > 1));
    if (stale) draw();
  }, 50);
});
resizer.observe(root);
new MutationObserver(() => root.querySelectorAll("[data-series]").forEach(div => resizer.observe(div)))
  .observe(root, { childList: true });

function render() {
  if (typeof Plotly === "undefined") { setTimeout(render, 100); return; }
  draw();
}
watch("value", render);
render();

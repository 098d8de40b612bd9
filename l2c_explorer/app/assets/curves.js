// Live training curves (plotly.js), one small chart per series, redrawn in place when new points
// arrive, so zoom and the page do not jump. Runs as gr.HTML js_on_load; the data is JSON in props.value:
// {series: [{key, title, color, reference?}], x: "step", x_title, points: [{step, loss, ...}, ...]}.
const root = element.querySelector(".l2c-curves");

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
    root.appendChild(div);
  }
  return div;
}

function draw() {
  const d = parse();
  if (!d) { root.dataset.points = "0"; return; }
  const ids = new Set(d.series.map(s => s.id || s.key));
  root.querySelectorAll("[data-series]").forEach(div => { if (!ids.has(div.dataset.series)) div.remove(); });
  d.series.forEach(s => chart(s.id || s.key));  // all charts exist before any is sized
  for (const s of d.series) {
    const pts = d.points.filter(p => p[s.key] !== undefined && p[s.key] !== null && (!s.stage || p.stage === s.stage));
    const div = chart(s.id || s.key);
    // a chart with nothing to show yet (e.g. a stage this method skips) stays hidden
    div.style.display = pts.length || !s.stage ? "" : "none";
    if (div.style.display === "none") { div.dataset.points = "0"; continue; }
    const traces = [{
      x: pts.map(p => p[d.x]), y: pts.map(p => p[s.key]), type: "scatter", mode: pts.length > 60 ? "lines" : "lines+markers",
      line: { color: s.color || "#1f77b4", width: 2 }, marker: { size: 4 }, name: s.title,
      hovertemplate: `${d.x_title} %{x}<br>${s.title} %{y}<extra></extra>`,
    }];
    if (s.reference !== undefined && s.reference !== null && pts.length) {
      traces.push({ x: [pts[0][d.x], pts[pts.length - 1][d.x]], y: [s.reference, s.reference], type: "scatter",
        mode: "lines", line: { color: "#888", dash: "dot", width: 1 }, name: s.reference_title || "reference",
        hoverinfo: "skip" });
    }
    const layout = {
      title: { text: s.title, font: { size: 13 } }, margin: { l: 45, r: 10, t: 30, b: 35 }, height: 220,
      xaxis: { title: { text: d.x_title, font: { size: 11 } } }, showlegend: false, uirevision: "keep",
      paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
    };
    Plotly.react(div, traces, layout, { displaylogo: false, responsive: true, displayModeBar: false });
    div.dataset.points = String(pts.length);
    div.dataset.last = pts.length ? String(pts[pts.length - 1][s.key]) : "";
  }
  root.dataset.points = String(d.points.length);
}

// Charts drawn while hidden (another tab) or before the layout settled get their size when they show.
const resizer = new ResizeObserver(() => {
  root.querySelectorAll("[data-series]").forEach(div => {
    if (div.offsetWidth && div._fullLayout && typeof Plotly !== "undefined") Plotly.Plots.resize(div);
  });
});
resizer.observe(root);

function render() {
  if (typeof Plotly === "undefined") { setTimeout(render, 100); return; }
  draw();
}
watch("value", render);
render();

// The image map: a WebGL scatter of every image (plotly.js), coloured by cluster, confidence or true
// label, with a thumbnail card on hover, lasso/box selection and click-to-isolate a cluster.
// Runs as gr.HTML js_on_load: `element`, `props`, `trigger` and `watch` are given by Gradio.
// The data arrives once per map as JSON in props.value (see l2c_explorer.explore.map_payload);
// thumbnails are fetched as small files from the app's thumbnail cache, one per hover.
const root = element.querySelector(".l2c-map");
const plot = root.querySelector(".l2c-map-plot");
const card = root.querySelector(".l2c-hover");
const cardImg = card.querySelector("img");
const cardText = card.querySelector(".l2c-hover-text");
const info = root.querySelector(".l2c-map-info");
const empty = root.querySelector(".l2c-map-empty");
const state = { data: null, raw: null, colour: "cluster", isolated: null, hoverTimer: null, hovered: -1 };
// Above this many groups the map is one WebGL trace coloured point by point (hundreds of traces and legend
// entries would make every redraw slow); clicking a point still shows only its group.
const LEGEND_LIMIT = 40;

function parse() {
  if (!props.value) { state.raw = null; return null; }
  if (props.value === state.raw) return state.data;
  state.raw = props.value;
  let d = null;
  try { d = JSON.parse(props.value); } catch (e) { return null; }
  // another run (not just the UMAP layout replacing the preview): forget the isolated group
  if (!state.data || !d || state.data.n !== d.n || state.data.names.length !== d.names.length) state.isolated = null;
  return d;
}

// group k's colour: the palette comes with the data (l2c_explorer.explore.GROUP_COLOURS), its only home
function colour(k) {
  const c = state.data.colours;
  return c[k % c.length];
}

// Only local actions in the toolbar (zoom, pan, box and lasso select, reset): nothing on this page sends
// anything out. plotly.js 3+ adds a "Share chart" button (sendChartToCloud) unless showSendToCloud is false;
// the older keys (showLink, showEditInChartStudio, sendDataToCloud) are for the plotly.js 2 of plotly 5.
// Scrolling over the map scrolls the page; the zoom tool and double-click (reset) still zoom.
const CONFIG = {
  displaylogo: false, responsive: true, scrollZoom: false, showSendToCloud: false, plotlyServerURL: "",
  showLink: false, showEditInChartStudio: false, showSources: false,
  modeBarButtonsToRemove: ["toImage", "autoScale2d", "sendChartToCloud", "sendDataToCloud", "editInChartStudio"],
};

function thumbUrl(i) {
  const d = state.data;
  return d.thumb[i] ? encodeURI(d.thumb_prefix + d.thumb[i] + ".webp") : "";
}

function groups(values, count, filter) {
  // index lists per value; with `filter`, only the images of the isolated group
  const out = Array.from({ length: count }, () => []);
  const lab = state.data.label;
  for (let i = 0; i < values.length; i++) {
    if (filter && state.isolated !== null && lab[i] !== state.isolated) continue;
    out[values[i]].push(i);
  }
  return out;
}

function scatter(idx, extra) {
  const d = state.data;
  const size = d.n > 5000 ? 4 : d.n > 1000 ? 6 : 8;
  return Object.assign({
    type: "scattergl", mode: "markers", hoverinfo: "none",
    x: idx.map(i => d.x[i]), y: idx.map(i => d.y[i]), customdata: idx,
    marker: { size: size, opacity: 0.85 },
  }, extra);
}

function traces() {
  const d = state.data;
  if (state.colour === "confidence") {
    const idx = [];
    for (let i = 0; i < d.n; i++) if (state.isolated === null || d.label[i] === state.isolated) idx.push(i);
    const t = scatter(idx, { name: "images", showlegend: false });
    t.marker.color = idx.map(i => d.confidence[i]);
    t.marker.colorscale = "Viridis"; t.marker.cmin = 0; t.marker.cmax = 1;
    t.marker.colorbar = { title: { text: "confidence" }, thickness: 12 };
    return [t];
  }
  const useTruth = state.colour === "truth" && d.truth;
  const values = useTruth ? d.truth : d.label;
  const names = useTruth ? d.truth_names : d.names;
  if (names.length > LEGEND_LIMIT) {
    const idx = [];
    for (let i = 0; i < d.n; i++) if (useTruth || state.isolated === null || d.label[i] === state.isolated) idx.push(i);
    const t = scatter(idx, { name: useTruth ? "true categories" : "groups", showlegend: false });
    t.marker.color = idx.map(i => colour(values[i]));
    return [t];
  }
  // By group, the other groups stay in the legend (greyed out), so a click there switches to them.
  return groups(values, names.length, useTruth).map((idx, k) => idx.length === 0 ? null : scatter(idx, {
    name: `${names[k]} (${idx.length})`, meta: k,
    visible: useTruth || state.isolated === null || state.isolated === k ? true : "legendonly",
    marker: { size: d.n > 5000 ? 4 : d.n > 1000 ? 6 : 8, opacity: 0.85, color: colour(k) },
  })).filter(t => t !== null);
}

function draw() {
  state.data = parse();
  const d = state.data;
  if (!d || !d.n) {
    root.dataset.ready = "0";
    empty.style.display = "block";
    plot.style.display = "none";
    info.textContent = "";
    return;
  }
  empty.style.display = "none";
  plot.style.display = "block";
  if (state.colour === "truth" && !d.truth) state.colour = "cluster";
  root.querySelectorAll("[data-colour]").forEach(b => {
    b.classList.toggle("selected", b.dataset.colour === state.colour);
    if (b.dataset.colour === "truth") b.style.display = d.truth ? "" : "none";
  });
  const layout = {
    dragmode: plot._fullLayout ? plot._fullLayout.dragmode : "lasso",
    // the top margin holds plotly's toolbar, so that it never covers the legend's first entries
    margin: { l: 10, r: 10, t: 40, b: 10 }, hovermode: "closest", uirevision: d.method + d.n,
    xaxis: { visible: false }, yaxis: { visible: false, scaleanchor: "x" },
    legend: { itemclick: false, itemdoubleclick: false, font: { size: 11 }, yanchor: "top", y: 1 },
    paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)",
  };
  Plotly.react(plot, traces(), layout, CONFIG);
  bind();
  const shown = state.isolated === null ? d.n : d.label.filter(l => l === state.isolated).length;
  const what = d.preview ? "Quick preview (PCA) while the UMAP map is computed" : "UMAP map";
  const iso = state.isolated === null ? "" : ` · showing only ${d.names[state.isolated]} (${shown} images)`;
  info.textContent = `${what} · ${d.n} images · ${d.names.length} groups${iso}`;
  root.dataset.ready = "1";
  root.dataset.method = d.method;
  root.dataset.points = String(shown);
  root.dataset.colour = state.colour;
  root.dataset.isolated = state.isolated === null ? "" : String(state.isolated);
}

function isolate(cluster) {
  const c = cluster === null || cluster === undefined || cluster === "" ? null : Number(cluster);
  if (c === state.isolated) return;
  state.isolated = Number.isNaN(c) ? null : c;
  if (state.data) draw();
}

function showCard(i, ev) {
  const d = state.data;
  const url = thumbUrl(i);
  card.classList.remove("missing");
  if (url) { cardImg.src = url; cardImg.style.display = ""; } else { cardImg.removeAttribute("src"); cardImg.style.display = "none"; }
  // one line per fact: a group name is never broken in the middle, a long path wraps where it must
  const lines = [["l2c-hover-group", d.names[d.label[i]]],
    ["l2c-hover-confidence", `confidence ${d.confidence[i].toFixed(2)}`], ["l2c-hover-path", d.path[i]]];
  if (d.truth) lines.push(["l2c-hover-truth", `true: ${d.truth_names[d.truth[i]]}`]);
  cardText.replaceChildren(...lines.map(([cls, text]) => {
    const div = document.createElement("div");
    div.className = cls;
    div.textContent = text;
    return div;
  }));
  const box = root.getBoundingClientRect();
  const x = ev ? ev.clientX - box.left : box.width / 2;
  const y = ev ? ev.clientY - box.top : box.height / 2;
  // above-right of the pointer, kept inside the map
  card.style.left = Math.max(4, Math.min(x + 14, box.width - 200)) + "px";
  card.style.top = Math.max(4, y - 190) + "px";
  card.style.display = "block";
  root.dataset.hoverIndex = String(i);
}

cardImg.addEventListener("error", () => { card.classList.add("missing"); });

plot.addEventListener("mouseleave", () => { card.style.display = "none"; });

function bind() {
  if (plot.dataset.bound) return;
  plot.dataset.bound = "1";
  plot.on("plotly_hover", ev => {
    const p = ev.points && ev.points[0];
    if (!p || p.customdata === undefined) return;
    const i = p.customdata;
    state.hovered = i;
    clearTimeout(state.hoverTimer);
    // a short dwell: moving across many points does not fetch every thumbnail
    state.hoverTimer = setTimeout(() => { if (state.hovered === i) showCard(i, ev.event); }, 60);
  });
  plot.on("plotly_unhover", () => {
    state.hovered = -1;
    clearTimeout(state.hoverTimer);
    card.style.display = "none";
  });
  plot.on("plotly_selected", ev => {
    if (!ev) return;
    const ids = ev.points.map(p => p.customdata).filter(i => i !== undefined);
    root.dataset.selected = String(ids.length);
    trigger("points_selected", { indices: ids });
  });
  plot.on("plotly_deselect", () => {
    root.dataset.selected = "0";
    trigger("points_selected", { indices: [] });
  });
  plot.on("plotly_click", ev => {
    const p = ev.points && ev.points[0];
    if (!p || p.customdata === undefined) return;
    const c = state.data.label[p.customdata];
    isolate(c);
    trigger("cluster_clicked", { cluster: c });
  });
  plot.on("plotly_legendclick", ev => {
    const k = ev.data[ev.curveNumber].meta;
    if (state.colour === "cluster" && k !== undefined) {
      isolate(state.isolated === k ? null : k);
      trigger("cluster_clicked", { cluster: state.isolated === null ? -1 : k });
    }
    return false;
  });
}

root.querySelectorAll("[data-colour]").forEach(b => b.addEventListener("click", () => {
  state.colour = b.dataset.colour;
  if (state.data) draw();
}));
root.querySelector("[data-action=all]").addEventListener("click", () => {
  isolate(null);
  trigger("cluster_clicked", { cluster: -1 });
});

// the page's other controls (cluster picker) reach the map through its root element
root.l2c = { isolate: isolate, state: state, plot: plot };

// A map drawn while hidden (another tab) gets its size when it shows.
new ResizeObserver(() => {
  if (plot.offsetWidth && plot._fullLayout && typeof Plotly !== "undefined") Plotly.Plots.resize(plot);
}).observe(plot);

function render() {
  if (typeof Plotly === "undefined") { setTimeout(render, 100); return; }
  draw();
}
watch("value", render);
render();

// What the live page shows: status, errors, the current label, the class bars, the legend, the
// hop timeline and the spectrogram. Everything here only draws; app.js decides what and when.

const TIMELINE_CELLS = 240;  // hops kept in the timeline strip
const LATENCY_KEEP = 100;    // hops behind the latency mean and p95
const PALETTE = [
  "#4e9de6", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
  "#edc948", "#b07aa1", "#ff9da7", "#c49c7c", "#bab0ac",
];

// ---- small helpers ----------------------------------------------------------------------------

export const $ = (id) => document.getElementById(id);
export const pct = (p) => (p == null ? "–" : (100 * p).toFixed(1) + "%");
export const seconds = (s) => (s == null ? "–" : s < 60 ? s.toFixed(2) + " s" : clock(s));
const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
export const ms = (v) => (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
// "0 hops", "1 hop", "2 hops": every count the page shows goes through here
export const count = (n, one, many = one + "s") => `${n} ${n === 1 ? one : many}`;

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

// A list redrawn from fresh items keeps the elements of the items still there (matched by
// data-key) and changes only the text and attributes that changed in them: a refresh every few
// seconds, or a hop of the watched stream, must not take away a hover, the keyboard focus or a
// click in progress (a click is lost when the element pressed is replaced before the release).
export function syncList(list, items) {
  const focused = list.contains(document.activeElement) ? document.activeElement.dataset.name : null;
  const keys = new Set(items.map((item) => item.dataset.key));
  for (const li of [...list.children]) if (!keys.has(li.dataset.key)) li.remove();  // gone first:
  const old = new Map([...list.children].map((li) => [li.dataset.key, li]));  // then nothing moves
  items.forEach((item, i) => {
    const was = old.get(item.dataset.key);
    const node = was || item;
    if (was) morph(was, item);
    if (list.children[i] !== node) list.insertBefore(node, list.children[i] || null);
  });
  // a stream whose entry changed kind (live -> ended, down -> live) keeps the focus on its new one
  const again = focused == null ? null : [...list.querySelectorAll("button")].find((b) => b.dataset.name === focused);
  if (again && document.activeElement !== again) again.focus();
}

// `was` becomes like `item` where they differ: attributes set, text changed, a child added or
// removed at the end (a label that appears), and an element replaced only where another kind of
// node stands in its place. Handlers stay those of `was` (the same key: the same action).
export function morph(was, item) {
  if (was.nodeType === Node.TEXT_NODE) {
    if (was.nodeValue !== item.nodeValue) was.nodeValue = item.nodeValue;
    return;
  }
  syncAttributes(was, item);
  const [olds, news] = [[...was.childNodes], [...item.childNodes]];
  news.forEach((fresh, i) => {
    const old = olds[i];
    if (!old) was.append(fresh);
    else if (old.nodeType === fresh.nodeType && old.nodeName === fresh.nodeName) morph(old, fresh);
    else old.replaceWith(fresh);
  });
  for (const extra of olds.slice(news.length)) extra.remove();
}

function syncAttributes(was, item) {
  for (const { name } of [...was.attributes]) if (!item.hasAttribute(name)) was.removeAttribute(name);
  for (const { name, value } of item.attributes) if (was.getAttribute(name) !== value) was.setAttribute(name, value);
}

function percentile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

// ---- status and errors ------------------------------------------------------------------------

export function setStatus(state, text) {
  $("status").dataset.state = state;
  $("status-text").textContent = text;
}

export function showError(message) {
  $("error-text").textContent = message;
  $("error").hidden = false;
}

export function clearError() {
  $("error").hidden = true;
  $("error-text").textContent = "";
}

// ---- what is shown: labels, bars, legend, timeline, spectrogram ------------------------------

const view = { labels: [], colors: new Map(), latencies: [] };

export function colorOf(label) {
  if (!view.colors.has(label)) {
    const i = view.colors.size;
    view.colors.set(label, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360} 55% 62%)`);
  }
  return view.colors.get(label);
}

export function setLabels(labels) {
  if (view.labels.length === labels.length && view.labels.every((l, i) => l === labels[i])) return;
  view.labels = [...labels];
  view.colors = new Map();
  const bars = $("bars");
  const legend = $("legend");
  bars.replaceChildren();
  legend.replaceChildren();
  for (const label of labels) {
    const color = colorOf(label);
    const bar = el("div", "bar");
    bar.setAttribute("role", "listitem");
    bar.dataset.label = label;
    const fill = el("span", "bar-fill");
    fill.style.background = color;
    const track = el("span", "bar-track");
    track.append(fill);
    bar.append(el("span", "bar-label", label), track, el("span", "bar-value", "–"));
    bars.append(bar);
    const item = el("li");
    const swatch = el("span", "swatch");
    swatch.style.background = color;
    item.append(swatch, document.createTextNode(label));
    legend.append(item);
  }
}

// A stream's own count of hops and audio (its /api/streams entry), until its next hop says more.
export function showProgress(hops, audioS) {
  $("hop-count").textContent = String(hops);
  $("audio-time").textContent = seconds(audioS);
}

export function resetView(title) {
  view.latencies = [];
  $("now-stream").textContent = title ? "· " + title : "";
  const current = $("current-label");
  current.textContent = "–";
  current.removeAttribute("data-label");
  current.style.removeProperty("--label-color");
  $("current-confidence").textContent = "–";
  $("current-hop").textContent = "";
  $("latency").textContent = "–";
  $("hop-count").textContent = "0";
  $("audio-time").textContent = "–";
  $("summary").hidden = true;
  $("timeline").replaceChildren();
  for (const bar of $("bars").children) showBar(bar, null, false);
  spectrogram.clear();
}

function showBar(bar, p, top) {
  bar.querySelector(".bar-fill").style.width = p == null ? "0%" : (100 * p).toFixed(2) + "%";
  bar.querySelector(".bar-value").textContent = pct(p);
  bar.classList.toggle("top", top);
}

export function onHop(hop) {
  const label = hop.label;
  const current = $("current-label");
  current.textContent = label == null ? "warming up…" : label;
  current.dataset.label = label == null ? "" : label;
  current.dataset.hop = hop.hop;
  current.dataset.endS = hop.end_s;
  current.classList.toggle("warmup", Boolean(hop.warmup));
  if (label != null) current.style.setProperty("--label-color", colorOf(label));
  $("current-confidence").textContent = pct(hop.confidence);
  $("current-hop").textContent =
    `hop ${hop.hop} · ${seconds(hop.start_s)}–${seconds(hop.end_s)}` + (hop.warmup ? " · warm-up" : "");
  showProgress(hop.hop + 1, hop.end_s);  // the stream's own count (hops start at 0), not what this page saw
  showBars(hop);
  addCell(hop);
  showLatency(hop.latency_ms);
}

function showBars(hop) {
  const probs = new Map((hop.top || []).map((entry) => [entry.label, entry.p]));
  if (!probs.size && hop.label != null) probs.set(hop.label, hop.confidence);
  for (const label of probs.keys()) if (!view.labels.includes(label)) setLabels([...view.labels, label]);
  for (const bar of $("bars").children) {
    const label = bar.dataset.label;
    showBar(bar, probs.has(label) ? probs.get(label) : hop.top ? 0 : null, label === hop.label);
  }
}

function addCell(hop) {
  const cell = el("span", "cell" + (hop.warmup ? " warmup" : ""));
  cell.setAttribute("role", "listitem");
  cell.dataset.hop = hop.hop;
  cell.dataset.endS = hop.end_s;
  cell.dataset.label = hop.label == null ? "" : hop.label;
  if (hop.label != null) cell.style.background = colorOf(hop.label);
  const at = `${seconds(hop.start_s)}–${seconds(hop.end_s)}`;
  cell.title = hop.label == null
    ? `${at}: warming up`
    : `${at}: ${hop.label} ${pct(hop.confidence)}${hop.warmup ? " (warm-up)" : ""}`;
  const timeline = $("timeline");
  timeline.append(cell);
  while (timeline.childElementCount > TIMELINE_CELLS) timeline.firstElementChild.remove();
}

function showLatency(latency) {
  if (latency == null) return;
  view.latencies.push(latency);
  if (view.latencies.length > LATENCY_KEEP) view.latencies.shift();
  const mean = view.latencies.reduce((a, b) => a + b, 0) / view.latencies.length;
  $("latency").textContent = `${ms(latency)} (mean ${ms(mean)}, p95 ${ms(percentile(view.latencies, 0.95))})`;
}

export function onEnd(message) {
  const s = message.summary || {};
  const parts = [`${count(s.hops, "hop")}, ${seconds(s.audio_s)} of audio`];
  if (s.label != null) parts.push(`overall ${s.label} ${pct(s.confidence)}`);
  if (s.latency_ms) {
    const l = s.latency_ms;
    parts.push(`latency mean ${ms(l.mean)}, p95 ${ms(l.p95)}, max ${ms(l.max)}`);
  }
  if (s.dropped) parts.push(`${count(s.dropped, "result")} dropped (the page read too slowly)`);
  const summary = $("summary");
  summary.textContent = `Stream ${message.stream} ended: ${parts.join(" · ")}.`;
  summary.hidden = false;
}

// A pulled source (--source) that is not streaming, from /health: what it reads and why it is down.
const SOURCE_STATES = { connecting: "connecting", backing_off: "down", failed: "failed", stopped: "stopped" };

// A stream's entry in the list: its name, newest label, and facts; a click calls onClick.
export function listItem(s, live, own, onClick) {
  const item = el("li", "stream-item" + (live ? "" : " ended"));
  const button = el("button", "stream");
  button.type = "button";
  button.dataset.name = s.name;
  button.setAttribute("aria-label", own ? `${s.name}: this page's microphone` : `Watch ${s.name}`);
  button.disabled = Boolean(own);
  const head = el("span", "stream-head");
  head.append(el("span", "stream-name", s.name));
  if (s.label != null) {
    const label = el("span", "stream-label", s.confidence == null ? s.label : `${s.label} ${pct(s.confidence)}`);
    label.style.setProperty("--label-color", colorOf(s.label));
    head.append(label);
  }
  const rate = s.sample_rate ? `${(s.sample_rate / 1000).toFixed(s.sample_rate % 1000 ? 1 : 0)} kHz` : "";
  const facts = own ? ["this page's microphone"] : [s.kind, s.source].filter(Boolean);
  const hops = count(s.hops || 0, "hop");
  facts.push(rate, ...(live ? [seconds(s.audio_s || 0), hops] : [hops, endedAt(s)]));
  // each fact stays on one line ("80 hops", not "80" and "hops" on two) where the panel is narrow
  const meta = facts.filter(Boolean).map((f) => f.replaceAll(" ", "\u00a0")).join(" · ");
  button.append(head, el("span", "stream-meta", meta));
  button.addEventListener("click", onClick);
  item.append(button);
  return item;
}

function endedAt(s) {
  const how = s.ended_by === "crash" ? " (server crashed)" : "";  // its last hop is when it stopped
  if (!s.ended) return "ended" + how;
  const at = new Date(1000 * s.ended);
  const today = at.toDateString() === new Date().toDateString();
  return "ended " + (today ? at.toLocaleTimeString() : at.toLocaleString()) + how;
}

export function sourceItem(name, s, onClick) {
  const item = el("li", "stream-item down");
  item.dataset.key = `down:${name}`;
  const button = el("button", "stream");
  button.type = "button";
  button.dataset.name = name;
  button.setAttribute("aria-label", `Watch ${name} (${SOURCE_STATES[s.state] || s.state})`);
  const head = el("span", "stream-head");
  head.append(el("span", "stream-name", name), el("span", "stream-state", SOURCE_STATES[s.state] || s.state));
  const facts = [s.kind, s.source, count(s.drops, "drop")];
  if (s.retry_in_s != null) facts.push(`retry in ${s.retry_in_s.toFixed(1)} s`);
  const meta = facts.filter(Boolean).map((f) => f.replaceAll(" ", "\u00a0")).join(" · ");
  button.append(head, el("span", "stream-meta", meta));
  if (s.last_error) button.append(el("span", "stream-error", s.last_error));
  button.addEventListener("click", onClick);
  item.append(button);
  return item;
}

// The spectrogram: a canvas one pixel per log-mel frame and band, new frames on the right.
export const spectrogram = (() => {
  const canvas = $("spectrogram");
  const ctx = canvas.getContext("2d", { willReadFrequently: true });
  const lut = inferno();
  return {
    clear() {
      ctx.fillStyle = `rgb(${lut[0]}, ${lut[1]}, ${lut[2]})`;
      ctx.fillRect(0, 0, canvas.width, canvas.height);
    },
    draw(message) {
      const bytes = Uint8Array.from(atob(message.data), (c) => c.charCodeAt(0));
      const bands = message.bands;
      if (canvas.height !== bands) {
        canvas.height = bands;
        this.clear();
      }
      const width = canvas.width;
      const frames = Math.min(message.frames, width);
      const skip = message.frames - frames;
      if (frames < width) ctx.putImageData(ctx.getImageData(frames, 0, width - frames, bands), 0, 0);
      const image = ctx.createImageData(frames, bands);
      for (let f = 0; f < frames; f++) {
        for (let b = 0; b < bands; b++) {
          const v = bytes[(skip + f) * bands + b];
          const o = ((bands - 1 - b) * frames + f) * 4;  // low bands at the bottom
          image.data[o] = lut[3 * v];
          image.data[o + 1] = lut[3 * v + 1];
          image.data[o + 2] = lut[3 * v + 2];
          image.data[o + 3] = 255;
        }
      }
      ctx.putImageData(image, width - frames, 0);
    },
  };
})();

function inferno() {  // 256 RGB triples, dark to bright, interpolated between anchors
  const anchors = [
    [0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
    [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164],
  ];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let v = 0; v < 256; v++) {
    const x = (v / 255) * (anchors.length - 1);
    const i = Math.min(Math.floor(x), anchors.length - 2);
    const t = x - i;
    for (let c = 0; c < 3; c++) lut[3 * v + c] = anchors[i][c] + t * (anchors[i + 1][c] - anchors[i][c]);
  }
  return lut;
}

// ---- one WebSocket at a time: the microphone's stream or a watched one ------------------------

export function describeModel(info) {  // a "ready" message, or /health's model
  const labels = info.labels || view.labels;
  const parts = [count(labels.length, "label")];
  if (info.hop_s) parts.push(`hop ${info.hop_s} s`);
  if (info.window) parts.push(`window ${count(info.window, "hop")}`);
  if (info.frontend) parts.push(`${info.frontend} front end`);
  $("model").textContent = parts.join(" · ");
}

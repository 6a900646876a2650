// The live page of `coaudio serve`: the browser's microphone as a stream, or watching one that
// is live; the current label, every class's probability, the model's log-mel spectrogram, a
// timeline of hops. Plain browser JavaScript, no build step, nothing fetched from elsewhere.
// The protocol is coaudio/serve/protocol.py's; the routes are coaudio/serve/app.py's.
"use strict";

(() => {
  const REFRESH_MS = 3000;        // how often the stream list is fetched again
  const BLOCK_S = 0.05;           // microphone audio per WebSocket message
  const PENDING_MAX_S = 10;       // microphone audio kept while the socket is still opening
  const TOP_K = 1000;             // the protocol's maximum: the server sends every class it has
  const TIMELINE_CELLS = 240;     // hops kept in the timeline strip
  const LATENCY_KEEP = 100;       // hops behind the latency mean and p95
  const ENDED_SHOWN = 6;          // ended streams (from the history) listed under the live ones
  const PALETTE = [
    "#4e9de6", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
    "#edc948", "#b07aa1", "#ff9da7", "#c49c7c", "#bab0ac",
  ];

  // ---- the server: every URL the page uses, and the token, live here --------------------------

  const server = (() => {
    const token = new URLSearchParams(location.search).get("token");
    const base = document.baseURI;  // relative URLs: the page also works behind a path prefix
    return {
      token,
      socketUrl() {
        const url = new URL("ws", base);
        url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
        if (token) url.searchParams.set("token", token);
        return url.href;
      },
      staticUrl(file) {
        return new URL("static/" + file, base).href;
      },
      async api(path) {
        const headers = token ? { Authorization: "Bearer " + token } : {};
        let response;
        try {
          response = await fetch(new URL(path, base), { headers, cache: "no-store" });
        } catch (err) {  // no HTTP answer at all
          throw new Error("the server does not answer: is coaudio serve still running?");
        }
        if (response.status === 401) {
          throw new Error(token
            ? "the server refused the token in this page's address"
            : "the server needs a token: open this page as /?token=YOUR_TOKEN");
        }
        if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
        return response.json();
      },
    };
  })();

  // ---- small helpers ----------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);
  const pct = (p) => (p == null ? "–" : (100 * p).toFixed(1) + "%");
  const seconds = (s) => (s == null ? "–" : s < 60 ? s.toFixed(2) + " s" : clock(s));
  const clock = (s) => `${Math.floor(s / 60)}:${String(Math.floor(s % 60)).padStart(2, "0")}`;
  const ms = (v) => (v < 10 ? v.toFixed(1) : Math.round(v)) + " ms";
  const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }

  function randomId(n) {
    const bytes = crypto.getRandomValues(new Uint8Array(n));
    return Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
  }

  function percentile(values, q) {
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
  }

  function f32le(buffer) {  // WebSocket audio is little-endian whatever the machine is
    if (LITTLE_ENDIAN) return buffer;
    const samples = new Float32Array(buffer);
    const view = new DataView(new ArrayBuffer(buffer.byteLength));
    samples.forEach((v, i) => view.setFloat32(4 * i, v, true));
    return view.buffer;
  }

  // ---- status and errors ------------------------------------------------------------------------

  function setStatus(state, text) {
    $("status").dataset.state = state;
    $("status-text").textContent = text;
  }

  function showError(message) {
    $("error-text").textContent = message;
    $("error").hidden = false;
  }

  function clearError() {
    $("error").hidden = true;
    $("error-text").textContent = "";
  }

  // ---- what is shown: labels, bars, legend, timeline, spectrogram ------------------------------

  const view = { labels: [], colors: new Map(), hops: 0, latencies: [] };

  function colorOf(label) {
    if (!view.colors.has(label)) {
      const i = view.colors.size;
      view.colors.set(label, i < PALETTE.length ? PALETTE[i] : `hsl(${(i * 137.5) % 360} 55% 62%)`);
    }
    return view.colors.get(label);
  }

  function setLabels(labels) {
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

  function resetView(title) {
    view.hops = 0;
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

  function onHop(hop) {
    view.hops += 1;
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
    $("hop-count").textContent = String(view.hops);
    $("audio-time").textContent = seconds(hop.end_s);
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

  function onEnd(message) {
    const s = message.summary || {};
    const parts = [`${s.hops} hops, ${seconds(s.audio_s)} of audio`];
    if (s.label != null) parts.push(`overall ${s.label} ${pct(s.confidence)}`);
    if (s.latency_ms) {
      const l = s.latency_ms;
      parts.push(`latency mean ${ms(l.mean)}, p95 ${ms(l.p95)}, max ${ms(l.max)}`);
    }
    if (s.dropped) parts.push(`${s.dropped} results dropped (the page read too slowly)`);
    const summary = $("summary");
    summary.textContent = `Stream ${message.stream} ended: ${parts.join(" · ")}.`;
    summary.hidden = false;
  }

  // The spectrogram: a canvas one pixel per log-mel frame and band, new frames on the right.
  const spectrogram = (() => {
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

  let conn = null;  // {kind: "mic" | "watch", name, ws, ...}

  function openSocket(session, first) {
    const ws = new WebSocket(server.socketUrl());
    session.ws = ws;
    session.errored = false;
    ws.onopen = () => {
      ws.send(JSON.stringify(first));
      if (session.kind === "mic") for (const block of session.pending.splice(0)) ws.send(block);
    };
    ws.onmessage = (event) => {
      if (session !== conn || typeof event.data !== "string") return;
      onMessage(session, JSON.parse(event.data));
    };
    ws.onclose = (event) => onClose(session, event);
    return ws;
  }

  function onMessage(session, message) {
    switch (message.type) {
      case "ready":
        setLabels(message.labels);
        describeModel(message);
        setStatus("live", `streaming the microphone as ${message.stream}`);
        break;
      case "watching":
        setLabels(message.labels);
        setStatus("live", message.live
          ? `watching ${message.stream}`
          : `watching ${message.stream} (not live yet: waiting for it to start)`);
        break;
      case "hop":
        restarted(session);
        onHop(message);
        break;
      case "mel":
        restarted(session);
        spectrogram.draw(message);
        break;
      case "end":
        onEnd(message);
        if (session.kind === "watch") {
          session.ended = true;
          setStatus("waiting", `${message.stream} ended; waiting for it to start again`);
        }
        break;
      case "error":
        session.errored = true;
        showError(message.error);
        setStatus("error", "error");
        break;
    }
  }

  function restarted(session) {  // a watched stream that ended came back under the same name
    if (session.kind !== "watch" || !session.ended) return;
    session.ended = false;
    resetView(session.name);
    setStatus("live", `watching ${session.name}`);
  }

  function onClose(session, event) {
    if (session.kind === "mic") releaseMic(session);
    if (session !== conn) return;
    conn = null;
    showControls();
    refreshStreams();
    if (session.errored) return;  // the server said why
    if (event.code === 1000 || session.closing) {
      setStatus("idle", session.kind === "mic" ? "microphone stream ended" : "idle");
    } else if (event.code === 1008 && event.reason) {
      showError(event.reason);
      setStatus("error", "refused");
    } else {
      showError(server.token || event.code !== 1006
        ? `the connection to the server was lost (code ${event.code})`
        : "could not connect to the server's WebSocket (is it running? does it need ?token=...?)");
      setStatus("error", "disconnected");
    }
  }

  function endConnection() {  // whatever runs now stops; its last messages are not shown
    const old = conn;
    if (!old) return;
    conn = null;
    old.closing = true;
    if (old.kind === "mic") stopMic(old);
    else old.ws.close(1000);
    showControls();
  }

  function showControls() {
    const micLive = Boolean(conn && conn.kind === "mic");
    $("mic-start").disabled = micLive;
    $("mic-stop").disabled = !micLive || conn.stopping;
    $("watch-stop").hidden = !(conn && conn.kind === "watch");
    for (const item of $("stream-list").querySelectorAll("button.stream")) {
      const watching = Boolean(conn && conn.kind === "watch" && conn.name === item.dataset.name);
      item.setAttribute("aria-pressed", String(watching));
    }
  }

  // ---- the microphone ---------------------------------------------------------------------------

  async function startMic() {
    clearError();
    if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      showError("this browser offers no microphone to this page: open it on https or on localhost");
      return;
    }
    endConnection();
    $("mic-start").disabled = true;
    setStatus("connecting", "asking for the microphone…");
    const session = { kind: "mic", name: "browser-" + randomId(4), pending: [], pendingFrames: 0 };
    try {
      session.media = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false },
        video: false,
      });
      session.ctx = new AudioContext();
      session.rate = session.ctx.sampleRate;
      await session.ctx.audioWorklet.addModule(server.staticUrl("worklet.js"));
    } catch (err) {
      releaseMic(session);
      $("mic-start").disabled = false;
      showError(`microphone: ${err.message || err.name || err}`);
      setStatus("error", "no microphone");
      return;
    }
    const ctx = session.ctx;
    session.node = new AudioWorkletNode(ctx, "pcm-tap", {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      processorOptions: { blockFrames: Math.round(ctx.sampleRate * BLOCK_S) },
    });
    session.node.port.onmessage = (event) => {
      if (event.data instanceof ArrayBuffer) sendAudio(session, event.data);
      else if (event.data === "flushed" && session.onFlushed) session.onFlushed();
    };
    session.source = ctx.createMediaStreamSource(session.media);
    session.source.connect(session.node);
    session.node.connect(ctx.destination);  // pulled by the graph; its output is silence
    conn = session;
    resetView(session.name);
    setStatus("connecting", "connecting…");
    openSocket(session, {
      name: session.name,
      sample_rate: ctx.sampleRate,
      channels: 1,
      format: "f32le",
      top_k: TOP_K,
      spectrogram: true,
    });
    if (ctx.state === "suspended") await ctx.resume();
    const track = session.media.getAudioTracks()[0];
    $("mic-info").textContent = `${track ? track.label || "microphone" : "microphone"} · ${ctx.sampleRate} Hz`;
    showControls();
  }

  function sendAudio(session, buffer) {
    if (session.stopped) return;
    const ws = session.ws;
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(f32le(buffer));
    } else if (!ws || ws.readyState === WebSocket.CONNECTING) {
      session.pending.push(f32le(buffer));
      session.pendingFrames += buffer.byteLength / 4;
      while (session.pendingFrames > PENDING_MAX_S * session.rate) {
        session.pendingFrames -= session.pending.shift().byteLength / 4;
      }
    }
  }

  async function stopMic(session) {
    if (!session || session.stopping) return;
    session.stopping = true;
    showControls();
    if (session === conn) setStatus("closing", "finishing the last hops…");
    if (session.node) {
      await new Promise((resolve) => {  // the worklet's last partial block first
        session.onFlushed = resolve;
        session.node.port.postMessage("flush");
        setTimeout(resolve, 500);
      });
    }
    session.stopped = true;
    releaseMic(session);
    if (!session.ws) return;
    if (session.ws.readyState === WebSocket.OPEN) {
      session.ws.send(JSON.stringify({ end: true }));  // the server sends the last hops, then closes
    } else {
      session.closing = true;
      session.ws.close();
    }
  }

  function releaseMic(session) {
    session.stopped = true;
    if (session.media) session.media.getTracks().forEach((track) => track.stop());
    if (session.source) session.source.disconnect();
    if (session.node) session.node.disconnect();
    if (session.ctx && session.ctx.state !== "closed") session.ctx.close();
    session.media = session.source = session.node = session.ctx = null;
  }

  // ---- watching a stream ------------------------------------------------------------------------

  function watch(name) {
    clearError();
    endConnection();
    const session = { kind: "watch", name };
    conn = session;
    resetView(name);
    setStatus("connecting", `connecting to ${name}…`);
    openSocket(session, { watch: name });
    showControls();
  }

  // ---- the stream list --------------------------------------------------------------------------

  let listError = null;

  async function refreshStreams() {
    let streams;
    try {
      streams = (await server.api("api/streams")).streams;
    } catch (err) {
      $("stream-list").replaceChildren();
      $("streams-updated").textContent = "could not load the streams";
      if (listError !== err.message) showError(err.message);
      listError = err.message;
      return;
    }
    if (listError && $("error-text").textContent === listError) clearError();  // the server is back
    listError = null;
    renderStreams(streams);
    $("streams-updated").textContent = "updated " + new Date().toLocaleTimeString();
  }

  function renderStreams(streams) {
    const live = streams.filter((s) => s.live);
    const liveNames = new Set(live.map((s) => s.name));
    const ended = [];
    for (const s of [...streams].filter((x) => !x.live).sort((a, b) => (b.started || 0) - (a.started || 0))) {
      if (!liveNames.has(s.name) && !ended.some((e) => e.name === s.name)) ended.push(s);
    }
    const list = $("stream-list");
    const focused = list.contains(document.activeElement) ? document.activeElement.dataset.name : null;
    list.replaceChildren();
    if (!live.length) {
      list.append(el("li", "empty muted small",
        "No live streams. Start the microphone, or send one: coaudio serve's /ws (see the README)."));
    }
    for (const s of live) list.append(streamItem(s, true));
    for (const s of ended.slice(0, ENDED_SHOWN)) list.append(streamItem(s, false));
    if (focused) {  // a refresh must not take the keyboard focus away
      const again = [...list.querySelectorAll("button.stream")].find((b) => b.dataset.name === focused);
      if (again) again.focus();
    }
    showControls();
  }

  function streamItem(s, live) {
    const own = conn && conn.kind === "mic" && conn.name === s.name;
    const item = el("li", "stream-item" + (live ? "" : " ended"));
    const button = el("button", "stream");
    button.type = "button";
    button.dataset.name = s.name;
    button.setAttribute("aria-label", own ? `${s.name}: this page's microphone` : `Watch ${s.name}`);
    button.disabled = Boolean(own);
    const head = el("span", "stream-head");
    head.append(el("span", "stream-name", s.name));
    if (s.label != null) {
      const label = el("span", "stream-label", `${s.label} ${pct(s.confidence)}`);
      label.style.setProperty("--label-color", colorOf(s.label));
      head.append(label);
    }
    const rate = s.sample_rate ? `${(s.sample_rate / 1000).toFixed(s.sample_rate % 1000 ? 1 : 0)} kHz` : "";
    const facts = own ? ["this page's microphone"] : [s.kind, s.source].filter(Boolean);
    facts.push(rate, live ? `${seconds(s.audio_s || 0)} · ${s.hops || 0} hops` : "ended");
    button.append(head, el("span", "stream-meta", facts.filter(Boolean).join(" · ")));
    button.addEventListener("click", () => watch(s.name));
    item.append(button);
    return item;
  }

  // ---- the model, once at start -----------------------------------------------------------------

  function describeModel(ready) {
    const labels = ready.labels || view.labels;
    const parts = [`${labels.length} labels`];
    if (ready.hop_s) parts.push(`hop ${ready.hop_s} s`);
    if (ready.window) parts.push(`window ${ready.window} hops`);
    if (ready.frontend) parts.push(`${ready.frontend} front end`);
    $("model").textContent = parts.join(" · ");
  }

  async function loadModel() {
    try {
      const health = await server.api("health");
      setLabels(health.model.labels);
      if (!$("model").textContent) describeModel({ labels: health.model.labels, frontend: health.model.frontend });
    } catch (err) {
      // the stream list reports an unreachable server or a missing token
    }
  }

  // ---- start ------------------------------------------------------------------------------------

  $("mic-start").addEventListener("click", startMic);
  $("mic-stop").addEventListener("click", () => conn && conn.kind === "mic" && stopMic(conn));
  $("watch-stop").addEventListener("click", () => {
    endConnection();
    setStatus("idle", "idle");
  });
  $("error-close").addEventListener("click", clearError);
  spectrogram.clear();
  loadModel();
  refreshStreams();
  setInterval(refreshStreams, REFRESH_MS);
})();

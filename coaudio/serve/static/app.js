// The live page of `coaudio serve`: the browser's microphone as a stream, or watching one that
// is live. This file holds the connections (one WebSocket at a time) and the stream list; what
// is drawn is view.js's, the microphone mic.js's. Plain ES modules, no build step, nothing
// fetched from elsewhere. The protocol is coaudio/serve/protocol.py's, the routes app.py's.

import { openMicrophone } from "./mic.js";
import {
  $, clearError, count, describeModel, el, listItem, morph, onEnd, onHop, resetView, setLabels,
  setStatus, showError, showProgress, sourceItem, spectrogram, syncList,
} from "./view.js";

const REFRESH_MS = 3000;  // how often the stream list is fetched again
const BLOCK_S = 0.05;     // microphone audio per WebSocket message
const PENDING_MAX = 200;  // blocks (10 s) kept while the socket is still opening
const TOP_K = 1000;       // the protocol's maximum: the server sends every class it has
const ENDED_SHOWN = 6;    // ended streams (from the history) listed under the live ones
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---- the server: every URL the page uses, and the token, live here ------------------------------

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

function randomId(n) {
  const bytes = crypto.getRandomValues(new Uint8Array(n));
  return Array.from(bytes, (b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("");
}

function f32le(buffer) {  // WebSocket audio is little-endian whatever the machine is
  if (LITTLE_ENDIAN) return buffer;
  const samples = new Float32Array(buffer);
  const view = new DataView(new ArrayBuffer(buffer.byteLength));
  samples.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return view.buffer;
}

// ---- one WebSocket at a time: the microphone's stream or a watched one ---------------------------

let conn = null;  // {kind: "mic" | "watch", name, ws, ...}: what the page shows now

function openSocket(session, first) {
  const ws = new WebSocket(server.socketUrl());
  session.ws = ws;
  ws.onopen = () => {
    ws.send(JSON.stringify(first));
    if (session.kind === "mic") for (const block of session.pending.splice(0)) ws.send(block);
  };
  ws.onmessage = (event) => {
    if (session !== conn || typeof event.data !== "string") return;  // an old connection's last words
    onMessage(session, JSON.parse(event.data));
  };
  ws.onclose = (event) => onClose(session, event);
}

function onMessage(session, message) {
  switch (message.type) {
    case "ready":
      session.opened = true;
      setLabels(message.labels);
      describeModel(message);
      setStatus("live", `streaming the microphone as ${message.stream}`);
      break;
    case "watching":
      session.opened = true;
      setLabels(message.labels);
      describeModel(message);
      session.live = message.live;
      session.ended = !message.live && session.wasListedEnded;
      setStatus(message.live ? "live" : "waiting", message.live
        ? `watching ${message.stream}`
        : session.ended
          ? `${message.stream} ended; waiting for it to start again`
          : `watching ${message.stream} (not live yet: waiting for it to start)`);
      break;
    case "hop":
      restarted(session);
      onHop(message);
      updateListed(message);
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
    case "drop":  // a pulled source lost its input; the server reconnects by itself
      session.ended = true;
      setStatus("waiting", `${message.stream} dropped (${message.reason}); retrying in ${Number(message.retry_in_s).toFixed(1)} s`);
      break;
    case "error":
      session.errored = true;
      showError(message.error);
      setStatus("error", "error");
      break;
  }
}

function restarted(session) {  // a watched stream began, or one that ended came back under its name
  if (session.kind !== "watch" || (session.live && !session.ended)) return;
  if (session.ended) resetView(session.name);
  session.live = true;
  session.ended = false;
  setStatus("live", `watching ${session.name}`);
}

function onClose(session, event) {
  if (session.mic) session.mic.close();
  session.stopped = true;
  if (session !== conn) return;
  conn = null;
  showControls();
  closed(session, event);
  refreshStreams();
}

function closed(session, event) {  // what the status (and the error box) say of a closed connection
  if (session.errored) return;  // the server said why
  const again = session.kind === "watch" ? `; watching ${session.name} again when it is back` : "";
  if (event.code === 1000 || session.closing) {
    setStatus("idle", session.kind === "mic" ? "microphone stream ended" : "idle");
  } else if (event.code === 1008 && event.reason) {
    showError(event.reason);
    setStatus("error", "refused");
  } else if (event.code === 1001) {  // the server was stopped: after the last hops, not an error
    awaitServer(session);
    setStatus("waiting", session.kind === "mic"
      ? "the server stopped, and with it the microphone stream; waiting for the server"
      : `the server stopped${again}`);
  } else if (session.opened) {  // it went away without a word (killed, or the network)
    const error = `the connection to the server was lost (code ${event.code})${again}`;
    showError(error);
    awaitServer(session, error);
    setStatus("error", "disconnected");
  } else {
    showError(server.token || event.code !== 1006
      ? `the connection to the server was lost (code ${event.code})`
      : "could not connect to the server's WebSocket (is it running? does it need ?token=...?)");
    setStatus("error", "disconnected");
  }
}

function awaitServer(session, error = null) {  // until a server answers again (see refreshStreams)
  serverGone = { watch: session.kind === "watch" ? session.name : null, at: Date.now(), error };
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
  const mic = conn && conn.kind === "mic" ? conn : null;
  $("mic-start").disabled = Boolean(mic);
  $("mic-stop").disabled = !mic || Boolean(mic.stopping);
  $("watch-stop").hidden = !(conn && conn.kind === "watch");
  for (const item of $("stream-list").querySelectorAll("button.stream")) {
    const watching = Boolean(conn && conn.kind === "watch" && conn.name === item.dataset.name);
    item.setAttribute("aria-pressed", String(watching));
  }
}

// ---- the microphone -----------------------------------------------------------------------------

async function startMic() {
  clearError();
  endConnection();
  serverGone = null;
  const session = { kind: "mic", name: "browser-" + randomId(4), pending: [] };
  conn = session;  // claimed now: a click elsewhere while the microphone opens supersedes it
  showControls();
  setStatus("connecting", "asking for the microphone…");
  try {
    session.mic = await openMicrophone(server.staticUrl("worklet.js"), BLOCK_S, (b) => sendAudio(session, b));
  } catch (err) {
    if (session === conn) {
      conn = null;
      showControls();
      showError(`microphone: ${err.message || err.name || err}`);
      setStatus("error", "no microphone");
    }
    return;
  }
  if (session !== conn || session.stopping) {  // stopped, or another choice, while it opened
    session.mic.close();
    if (session === conn) {
      conn = null;
      showControls();
      setStatus("idle", "idle");
    }
    return;
  }
  resetView(session.name);
  setStatus("connecting", "connecting…");
  $("mic-info").textContent = `${session.mic.device} · ${session.mic.rate} Hz`;
  openSocket(session, {
    name: session.name,
    sample_rate: session.mic.rate,
    channels: 1,
    format: "f32le",
    top_k: TOP_K,
    spectrogram: true,
  });
}

function sendAudio(session, buffer) {
  if (session.stopped) return;
  const ws = session.ws;
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(f32le(buffer));
  } else if (!ws || ws.readyState === WebSocket.CONNECTING) {
    session.pending.push(f32le(buffer));
    if (session.pending.length > PENDING_MAX) session.pending.shift();
  }
}

async function stopMic(session) {
  if (session.stopping) return;
  session.stopping = true;
  showControls();
  if (session === conn) setStatus("closing", "finishing the last hops…");
  if (session.mic) {
    await session.mic.flush();  // the last partial block is sent first
    session.mic.close();
  }
  session.stopped = true;
  const ws = session.ws;
  if (ws && ws.readyState === WebSocket.OPEN) {
    ws.send(JSON.stringify({ end: true }));  // the server sends the last hops, then closes
  } else if (ws) {
    session.closing = true;
    ws.close();
  }
}

// ---- watching a stream --------------------------------------------------------------------------

function watch(name) {
  clearError();
  endConnection();
  const session = { kind: "watch", name, wasListedEnded: !listed.has(name) && endedListed.has(name) };
  conn = session;
  serverGone = null;
  resetView(name);
  // until its next hop: how far the stream is (not 0: it may be old), or how far it went if ended
  const entry = listed.get(name) || endedListed.get(name);
  if (entry) showProgress(entry.hops || 0, entry.audio_s);
  setStatus("connecting", `connecting to ${name}…`);
  openSocket(session, { watch: name });
  showControls();
}

// ---- the stream list ----------------------------------------------------------------------------

let listError = null;
let serverGone = null;  // after the server stopped or went away: {watch: NAME or null, at, error}

async function refreshStreams() {
  let streams, sources, uptime;
  try {  // /health too: a pulled source that is down has no stream to list, only a state
    const [list, health] = await Promise.all([server.api("api/streams"), server.api("health")]);
    [streams, sources, uptime] = [list.streams, health.sources || {}, health.uptime_s];
  } catch (err) {
    $("stream-list").replaceChildren();
    $("streams-updated").textContent = "could not load the streams";
    if (serverGone) return;  // the status says so already: a stopped server is not a new error
    if (listError !== err.message) showError(err.message);
    listError = err.message;
    return;
  }
  if (listError && $("error-text").textContent === listError) clearError();  // the server is back
  listError = null;
  // a server started since the stop (not the old one, still answering while it drains): what was
  // watched is watched again
  if (serverGone && !conn && 1000 * uptime < Date.now() - serverGone.at) {
    const { watch: name, error } = serverGone;
    serverGone = null;
    if (error && $("error-text").textContent === error) clearError();
    if (name) watch(name);
    else setStatus("idle", "idle");
  }
  renderStreams(streams, sources);
  const live = streams.filter((s) => s.live).length;
  $("streams-updated").textContent = `updated ${new Date().toLocaleTimeString()} · ${count(live, "live stream")}`;
}

const listed = new Map();  // name -> the /api/streams entry of a live stream, as last drawn
const endedListed = new Map();  // the same for the ended streams listed

function updateListed(hop) {  // the shown stream's entry keeps up between refreshes
  const entry = listed.get(hop.stream);
  const button = $("stream-list").querySelector(`button.stream[data-name="${CSS.escape(hop.stream)}"]`);
  if (!entry || !button) return;
  Object.assign(entry, { label: hop.label, confidence: hop.confidence, hops: hop.hop + 1 });
  entry.audio_s = Math.max(entry.audio_s || 0, hop.end_s);
  morph(button.parentElement, streamItem(entry, true));  // the same button: focus and hover stay
  showControls();
}

function renderStreams(streams, sources) {
  const live = streams.filter((s) => s.live);
  const liveNames = new Set(live.map((s) => s.name));
  const down = Object.entries(sources).filter(([name, s]) => s.state !== "streaming" && !liveNames.has(name));
  for (const [name] of down) liveNames.add(name);  // not among the ended ones as well
  listed.clear();
  for (const s of live) listed.set(s.name, s);
  endedListed.clear();
  const ended = [];
  const newest = (s) => s.ended || s.started || 0;
  for (const s of streams.filter((x) => !x.live).sort((a, b) => newest(b) - newest(a))) {
    if (!liveNames.has(s.name) && !ended.some((e) => e.name === s.name)) ended.push(s);
  }
  const items = [];
  if (!live.length) {
    items.push(keyed("empty", el("li", "empty muted small",
      "No live streams. Start the microphone, or send one: coaudio serve's /ws (see the README).")));
  }
  for (const s of live) items.push(streamItem(s, true));
  if (down.length) items.push(keyed("group:down", el("li", "group", "Pulled sources not streaming")));
  for (const [name, s] of down) items.push(sourceItem(name, s, () => watch(name)));
  if (ended.length) items.push(keyed("group:ended", el("li", "group", "Ended (from the history)")));
  for (const s of ended.slice(0, ENDED_SHOWN)) {
    endedListed.set(s.name, s);
    items.push(streamItem(s, false));
  }
  syncList($("stream-list"), items);
  showControls();
}

function keyed(key, item) {
  item.dataset.key = key;
  return item;
}

function streamItem(s, live) {  // own: the entry of this page's microphone stream (not clickable)
  const own = Boolean(conn && conn.kind === "mic" && conn.name === s.name);
  return keyed(`${live ? "live" : "ended"}:${s.name}`, listItem(s, live, own, () => watch(s.name)));
}

// ---- start --------------------------------------------------------------------------------------

async function loadModel() {
  try {
    const health = await server.api("health");
    setLabels(health.model.labels);
    if (!$("model").textContent) describeModel(health.model);
  } catch (err) {
    // the stream list reports an unreachable server or a missing token
  }
}

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

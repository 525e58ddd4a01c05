// The remote-counter console: queue with ring, answer, two live views, voice, stills.
"use strict";
const $ = (id) => document.getElementById(id);
const csrf = document.querySelector('meta[name="csrf-token"]').content;
async function post(path, body) {
  const r = await fetch(path, {
    method: "POST", body: JSON.stringify(body || {}),
    headers: {"Content-Type": "application/json", "X-CSRFToken": csrf},
  });
  const out = await r.json().catch(() => ({error: `HTTP ${r.status}`}));
  if (!r.ok) { problem(out.error || `HTTP ${r.status}`); throw new Error(out.error); }
  return out;
}
function problem(text) {
  $("problem").textContent = text;
  $("problem").hidden = !text;
}
const mins = (s) => (s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${s % 60} s`);

// -- the ring: browsers only play sound after a click on the page
let audio = null;
$("sound").addEventListener("click", () => {
  audio = audio || new AudioContext();
  audio.resume();
  $("sound").textContent = "Ring is on";
  $("sound").disabled = true;
});
let lastRing = 0;
function ring() {
  if (!audio || Date.now() - lastRing < 2500) return;
  lastRing = Date.now();
  for (const [at, f] of [[0, 880], [0.25, 660], [0.5, 880]]) {
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = f;
    g.gain.setValueAtTime(0.2, audio.currentTime + at);
    g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + at + 0.22);
    o.connect(g).connect(audio.destination);
    o.start(audio.currentTime + at);
    o.stop(audio.currentTime + at + 0.24);
  }
}

// -- the console state
let mine = null;
// the call this page answered (kept over a reload of this tab): camera, microphone and the
// views start for that call only, never for one the hub merely shows as ours
// (call ids are never reused, so an old one left here matches nothing)
let answered = sessionStorage.getItem("counter.answered");
function answeredHere(call) {
  answered = call;
  sessionStorage.setItem("counter.answered", call);
}
const ours = (m) => !!m && m.answered_by_me === true && m.call === answered;
function render(s) {
  const q = $("queue");
  q.replaceChildren(...s.queue.map((c) => {
    const li = document.createElement("li");
    li.className = "ringing";
    li.dataset.call = c.call;
    li.innerHTML = `<b></b><span>waiting ${mins(c.waiting_s)}</span>`;
    li.querySelector("b").textContent = c.dev;
    const b = document.createElement("button");
    b.textContent = "Answer";
    b.disabled = !!s.mine;
    b.addEventListener("click", () => post(`/counter/calls/${c.call}/answer`)
      .then(() => { answeredHere(c.call); poll(); }, () => {}));
    li.append(b);
    return li;
  }));
  $("empty").hidden = s.queue.length > 0;
  $("taken").textContent = s.taken.map((t) => `${t.dev}: talking with ${t.staff}`).join(" · ");
  if (s.queue.length && !s.mine) ring();
  callsOver(s);
  document.title = s.queue.length ? `(${s.queue.length}) counter — mimamori` : "counter — mimamori";
  showCall(s.mine);
}

// -- "Recent calls": reloaded (the list alone) when a call this console showed is over
let shownCalls = new Set();
function callsOver(s) {
  const now = new Set([
    ...s.queue.map((c) => c.call), ...s.taken.map((t) => `${t.dev} ${t.staff}`),
    ...(s.mine ? [s.mine.call] : []),
  ]);
  if ([...shownCalls].some((k) => !now.has(k))) refreshRecent();
  shownCalls = now;
}
async function refreshRecent() {
  try {
    const r = await fetch("/counter/recent");
    if (r.ok) $("recent").innerHTML = await r.text();
  } catch (e) { /* the hub restarted: the next call's end tries again */ }
}

function showCall(m) {
  $("live").hidden = !m;
  if (!m) { if (mine) stopCall(); return; }
  if (!mine || mine.call !== m.call || mine.ours !== ours(m)) { if (mine) stopCall(); startCall(m); }
  mine.state = m.state;
  $("live-dev").textContent = m.dev;
  $("live-state").textContent = !mine.ours ? "answered in another window"
    : m.state === "connected" ? "connected" : "connecting…";
  $("live-for").textContent = m.answered
    ? `for ${mins(Math.round((Date.now() - Date.parse(m.answered)) / 1000))}` : "";
  $("thin").hidden = !(m.state === "connected" && m.thin);
  if (m.state === "connected" && mine.ours && !mine.voice) voice(mine);
  renderStills(m);
  if (m.problems.length) problem(m.problems[m.problems.length - 1]);
}

function startCall(m) {
  problem("");
  mine = {call: m.call, state: m.state, voice: null, stills: "", ours: ours(m)};
  if (!mine.ours) {
    problem("You answered this call in another window: talk there, or end it here.");
    return;
  }
  for (const name of ["face", "doc"]) view(mine, name);
}
function stopCall() {
  const r = mine;
  mine = null;
  if (r.voice) { r.voice.pc.close(); r.voice.media && r.voice.media.getTracks().forEach((t) => t.stop()); }
  for (const name of ["face", "doc"]) clearView(name);
  $("stills").replaceChildren();
  closeZoom();
}

// -- a live view: each fetch waits for the next frame; taking it lets the kiosk send another.
// Each JPEG is decoded into an ImageBitmap, drawn on the view's canvas and closed at once:
// no object URL, no <img> (whose decoded frames Chromium's image cache keeps: ~20 a second
// grew the page by hundreds of MiB in minutes), and nothing held once the call ends.
async function view(r, name) {
  const canvas = $(`view-${name}`);
  const ctx = canvas.getContext("2d");
  let seq = 0;
  while (mine === r) {
    let resp;
    try {
      resp = await fetch(`/counter/calls/${r.call}/view/${name}?after=${seq}`);
    } catch (e) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
    if (resp.status === 204) {
      if (resp.headers.get("X-Call-Ended")) { poll(); break; }  // over: no more polls for it
      continue;
    }
    if (!resp.ok) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
    const blob = await resp.blob();
    if (mine !== r) break;
    let bitmap;
    try { bitmap = await createImageBitmap(blob); } catch (e) { continue; }  // a broken JPEG
    try {
      if (mine !== r) break;
      if (canvas.width !== bitmap.width || canvas.height !== bitmap.height) {
        canvas.width = bitmap.width;
        canvas.height = bitmap.height;
      }
      ctx.drawImage(bitmap, 0, 0);
    } finally { bitmap.close(); }
    seq = Number(resp.headers.get("X-Seq"));
    note(name, seq, Date.now() - Date.parse(resp.headers.get("X-Captured")));
    canvas.dataset.seq = String(seq);
    canvas.dataset.ts = resp.headers.get("X-Captured");
    canvas.dataset.shown = new Date().toISOString();
    canvas.dataset.frames = String(Number(canvas.dataset.frames || 0) + 1);
  }
}
// what the views delivered since last asked (bounded: the last 4096 latencies per view)
const seen = {face: null, doc: null};
function note(name, seq, ms) {
  const v = seen[name] || (seen[name] = {frames: 0, dropped: 0, last: 0, ms: []});
  v.frames += 1;
  if (v.last && seq > v.last + 1) v.dropped += seq - v.last - 1;
  v.last = seq;
  if (v.ms.length < 4096) v.ms.push(ms);
}
window.viewStats = () => {
  const out = {};
  for (const name of ["face", "doc"]) {
    const v = seen[name];
    out[name] = v ? {frames: v.frames, dropped: v.dropped, ms: v.ms} : {frames: 0, dropped: 0, ms: []};
    if (v) { v.frames = 0; v.dropped = 0; v.ms = []; }
  }
  return out;
};
function clearView(name) {
  seen[name] = null;
  const canvas = $(`view-${name}`);
  canvas.width = 0;  // drops the canvas's backing store
  canvas.height = 0;
  canvas.dataset.seq = "0";
  delete canvas.dataset.ts;
}
setInterval(() => {  // how old the picture on screen is
  for (const name of ["face", "doc"]) {
    const img = $(`view-${name}`), age = $(`age-${name}`);
    if (!img.dataset.ts || !mine) { age.textContent = ""; continue; }
    const s = Math.max(0, (Date.now() - Date.parse(img.dataset.ts)) / 1000);
    age.textContent = s < 2 ? "· live" : `· ${s.toFixed(0)} s old`;
    age.className = s < 2 ? "" : "stale";
  }
}, 500);

// -- voice: this page offers (camera + microphone), the kiosk's screen answers
async function voice(r) {
  if (!r.ours || r.call !== answered) return;  // never for a call this page did not answer
  let iceServers = [];
  try {
    iceServers = (await (await fetch("/counter/ice.json")).json()).iceServers;
  } catch (e) { problem("could not read the TURN servers: trying a direct connection"); }
  if (mine !== r || r.voice) return;
  const pc = new RTCPeerConnection({iceServers});
  r.voice = {pc, media: null, after: 0};
  try {
    r.voice.media = await navigator.mediaDevices.getUserMedia({
      audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true},
      video: {width: 640, height: 360},
    });
    r.voice.media.getTracks().forEach((t) => pc.addTrack(t, r.voice.media));
    $("me").srcObject = r.voice.media;
  } catch (e) {
    problem(`no microphone or camera here (${e.name}): the resident will not hear you`);
    pc.addTransceiver("audio", {direction: "recvonly"});
  }
  pc.ontrack = (ev) => { $("them").srcObject = ev.streams[0]; };
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise((ok) => {
    if (pc.iceGatheringState === "complete") return ok();
    pc.addEventListener("icegatheringstatechange", () => pc.iceGatheringState === "complete" && ok());
    setTimeout(ok, 3000);
  });
  if (mine !== r) return;
  await post(`/counter/calls/${r.call}/offer`, {sdp: pc.localDescription.sdp});
  while (mine === r && !pc.remoteDescription) {
    let resp, msgs = [];
    try {
      resp = await fetch(`/counter/calls/${r.call}/signal?after=${r.voice.after}`);
      if (resp.headers.get("X-Call-Ended")) break;
      msgs = await resp.json();
    } catch (e) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
    for (const m of Array.isArray(msgs) ? msgs : []) {
      r.voice.after += 1;
      if (m.type === "answer" && !pc.remoteDescription) await pc.setRemoteDescription(m);
    }
  }
}
$("mute").addEventListener("click", () => {
  const media = mine && mine.voice && mine.voice.media;
  if (!media) return;
  const on = !media.getAudioTracks()[0].enabled;
  media.getAudioTracks().forEach((t) => { t.enabled = on; });
  $("mute").textContent = on ? "Mute my microphone" : "Unmute my microphone";
  $("mute").classList.toggle("muted", !on);
});
window.voiceStats = async () => {
  const v = mine && mine.voice;
  if (!v) return {connected: false, audioBytes: 0};
  let audioBytes = 0, packets = 0, lost = 0, jitter = 0;
  let route = null;  // candidate types of the selected pair: [local, remote], e.g. relay
  const report = await v.pc.getStats();
  report.forEach((st) => {
    const pair = st.type === "transport" && report.get(st.selectedCandidatePairId);
    if (pair) {
      route = [report.get(pair.localCandidateId), report.get(pair.remoteCandidateId)]
        .map((c) => c && c.candidateType);
    }
    if (st.type === "inbound-rtp" && st.kind === "audio") {
      audioBytes += st.bytesReceived;
      packets += st.packetsReceived || 0;
      lost += st.packetsLost || 0;
      jitter = Math.max(jitter, st.jitter || 0);
    }
  });
  const pc = v.pc;
  return {connected: pc.connectionState === "connected", audioBytes, packets, lost, jitter,
          route, ice: pc.iceConnectionState, signaling: pc.signalingState};
};

// -- pointing at the form: a click on the desk view (or a still) shows a mark on the kiosk's
// screen, on the same spot of the paper; one click clears it (audited, nothing recorded)
let markKind = "dot";
for (const b of document.querySelectorAll("#marks [data-mark]")) {
  b.addEventListener("click", () => {
    markKind = b.dataset.mark;
    for (const o of document.querySelectorAll("#marks [data-mark]")) o.classList.toggle("on", o === b);
  });
}
function pointAt(ev, el, on) {
  if (!mine || !mine.ours) return;
  const box = el.getBoundingClientRect();
  const iw = el.naturalWidth || el.width, ih = el.naturalHeight || el.height;
  if (!iw || !ih) return;
  const s = Math.min(box.width / iw, box.height / ih);  // object-fit: contain letterboxes it
  const x = (ev.clientX - box.left - (box.width - iw * s) / 2) / (iw * s);
  const y = (ev.clientY - box.top - (box.height - ih * s) / 2) / (ih * s);
  if (x < 0 || x > 1 || y < 0 || y > 1) return;
  post(`/counter/calls/${mine.call}/point`, {mark: markKind, x, y, on}).then(() => problem(""), () => {});
}
$("view-doc").addEventListener("click", (ev) => pointAt(ev, $("view-doc"), "view"));
$("zoom-img").addEventListener("click", (ev) => {
  if (zoomed && mine && zoomed.call === mine.call) pointAt(ev, $("zoom-img"), "page");
});
$("mark-clear").addEventListener("click", () => mine && post(`/counter/calls/${mine.call}/point`, {mark: "clear"}).catch(() => {}));

// -- end, capture, stills
$("end").addEventListener("click", () => mine && post(`/counter/calls/${mine.call}/end`).then(poll, () => {}));
function capture(button) {
  const label = button.textContent;
  mine && post(`/counter/calls/${mine.call}/capture`).then(() => {
    button.textContent = "Capturing…";
    setTimeout(() => { button.textContent = label; }, 2000);
  }, () => {});
}
$("capture").addEventListener("click", () => capture($("capture")));
$("thin-still").addEventListener("click", () => capture($("thin-still")));

function renderStills(m) {
  const key = JSON.stringify(m.stills.map((s) => s.still));
  if (key === mine.stills) return;
  mine.stills = key;
  $("stills").replaceChildren(...m.stills.slice().reverse().map((s) => {
    const f = document.createElement("figure");
    f.dataset.still = s.still;
    const img = document.createElement("img");
    img.src = `/counter/calls/${m.call}/stills/${s.still}.jpg`;
    const cap = document.createElement("figcaption");
    cap.textContent = s.found ? `page, ${s.w}×${s.h}${s.dpi ? `, ${Math.round(s.dpi)} dpi` : ""}` : "no page found";
    for (const w of s.warnings) {
      const p = document.createElement("div");
      p.className = "warn";
      p.textContent = w;
      cap.append(p);
    }
    f.append(img, cap);
    f.addEventListener("click", () => openZoom(m.call, s, img.src));
    return f;
  }));
}
let zoomed = null;
function openZoom(call, s, src) {
  zoomed = {call, still: s.still};
  $("zoom-img").src = src;
  $("zoom-info").textContent = s.found ? `${s.w}×${s.h} px` : "no page found: whole frame";
  $("save-reason").value = "";
  $("zoom").hidden = false;
}
function closeZoom() { $("zoom").hidden = true; zoomed = null; }
$("zoom-close").addEventListener("click", closeZoom);
$("zoom-fit").addEventListener("click", () => $("zoom-img").parentElement.classList.remove("full"));
$("zoom-full").addEventListener("click", () => $("zoom-img").parentElement.classList.add("full"));
$("save").addEventListener("click", () => {
  if (!zoomed) return;
  post(`/counter/calls/${zoomed.call}/stills/${zoomed.still}/save`, {reason: $("save-reason").value})
    .then(() => { problem(""); $("save").textContent = "Kept"; setTimeout(() => { $("save").textContent = "Keep this still"; }, 2000); }, () => {});
});

async function poll() {
  try {
    const r = await fetch("/counter/state.json");
    if (r.ok) render(await r.json());
  } catch (e) { /* the hub restarted: try again */ }
}
setInterval(poll, 1000);
poll();

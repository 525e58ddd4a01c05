// The resident's screen: shows the call, speaks it, and carries the voice (WebRTC).
"use strict";
const $ = (id) => document.getElementById(id);
const post = (path, body) => fetch(path, {
  method: "POST", headers: {"X-Kiosk": "1", "Content-Type": "application/json"},
  body: JSON.stringify(body || {}),
}).then((r) => r.json());

function text(s) {
  const phone = `☎ ${s.phone}`;
  if (s.state === "ringing") {
    return s.position > 1
      ? [`職員を呼んでいます。${s.position}番目です。そのままお待ちください`,
         `Calling staff: you are number ${s.position}. Please wait here.`]
      : ["職員を呼んでいます。そのままお待ちください", "Calling staff. Please wait here."];
  }
  if (s.state === "connected" && s.thin) {
    return ["通信が弱いため、映像を止めています。お話はこのまま続けられます",
            "The connection is weak, so the picture is paused. The call continues by voice."];
  }
  if (s.state === "connected") {
    return [`市役所の職員（${s.staff}）とつながりました。ゆっくりお話しください`,
            `Connected to city hall (${s.staff}). Take your time.`];
  }
  if (s.state === "ended") {
    return {
      no_answer: [`ただいま職員が出られません。お電話ください ${phone}`,
                  `Nobody can answer right now. Please phone ${s.phone}.`],
      link_lost: [`通信が切れました。もう一度押すか、お電話ください ${phone}`,
                  `The connection was lost. Press again or phone ${s.phone}.`],
      cancelled: ["呼び出しをやめました", "The call was cancelled."],
    }[s.reason] || ["ご利用ありがとうございました", "Thank you. The call has ended."];
  }
  if (s.notice === "offline" || !s.online) {
    return [`いま市役所につながりません。お電話ください ${phone}`,
            `City hall cannot be reached now. Please phone ${s.phone}.`];
  }
  if (s.notice === "closed" || !s.open) {
    return [`受付時間外です。次の受付は ${s.next_open} からです`,
            `The counter is closed. It opens again ${s.next_open_en}.`];
  }
  return ["ご用の方はボタンを押してください", "Press the button to talk to city hall staff"];
}

let last = {};
let spoken = "";
function say(ja) {
  if (!last.speak || !("speechSynthesis" in window) || ja === spoken) return;
  spoken = ja;
  const u = new SpeechSynthesisUtterance(ja);
  u.lang = "ja-JP";
  u.rate = 0.85;
  speechSynthesis.cancel();
  speechSynthesis.speak(u);
}

function render(s) {
  last = s;
  document.body.dataset.state = s.state;
  const [ja, en] = text(s);
  $("msg-ja").textContent = ja;
  $("msg-en").textContent = en;
  $("camera").hidden = !s.camera_on;
  const inCall = s.state === "ringing" || s.state === "connected";
  $("call").hidden = inCall;
  $("cancel").hidden = !inCall;
  $("cancel-ja").textContent = s.state === "connected" ? "終わる" : "やめる";
  $("cancel-en").textContent = s.state === "connected" ? "End the call" : "Cancel";
  $("staff").hidden = s.state !== "connected";
  $("hours").textContent = s.hours_ja;
  $("hours-en").textContent = `Open ${s.hours_en}`;
  document.body.classList.toggle("alert",
    !s.online || !s.open || (s.state === "ended" && s.reason !== "staff_ended"));
  say(ja);
  voice(s);
  showMark(s);
}

// -- staff pointing at the form: the desk as this kiosk sees it, with their mark on the paper
let markTimer = null;
function showMark(s) {
  const on = s.state === "connected" && !!s.mark;
  $("desk-fig").hidden = !on;
  if (on && !markTimer) {
    const load = () => { $("desk").src = `/api/desk.jpg?t=${Date.now()}`; };
    load();
    markTimer = setInterval(load, 700);
  } else if (!on && markTimer) {
    clearInterval(markTimer);
    markTimer = null;
    $("desk").removeAttribute("src");
  }
}

// -- voice: staff offer, this page answers; microphone only (the cameras belong to the kiosk)
let rtc = null;
async function voice(s) {
  if (s.state === "connected" && s.call && (!rtc || rtc.call !== s.call)) {
    hangUp();
    rtc = {call: s.call, after: 0, pc: null, mic: null};
    listen(rtc);
  } else if (s.state !== "connected" && rtc) {
    hangUp();
  }
}
function hangUp() {
  if (!rtc) return;
  const r = rtc;
  rtc = null;
  if (r.pc) r.pc.close();
  if (r.mic) r.mic.getTracks().forEach((t) => t.stop());
  $("staff").srcObject = null;
}
async function listen(r) {
  while (rtc === r) {
    let msgs = [];
    try {
      const resp = await fetch(`/api/signal?call=${r.call}&after=${r.after}`);
      msgs = await resp.json();
    } catch (e) { await new Promise((ok) => setTimeout(ok, 1000)); continue; }
    for (const m of msgs) {
      r.after += 1;
      if (m.type === "offer" && rtc === r) await answer(r, m.sdp);
    }
  }
}
async function answer(r, sdp) {
  if (r.pc) r.pc.close();
  const pc = new RTCPeerConnection({iceServers: last.ice_servers});
  r.pc = pc;
  pc.ontrack = (ev) => { $("staff").srcObject = ev.streams[0]; };
  try {
    r.mic = r.mic || await navigator.mediaDevices.getUserMedia(
      {audio: {echoCancellation: true, noiseSuppression: true, autoGainControl: true}});
    r.mic.getTracks().forEach((t) => pc.addTrack(t, r.mic));
  } catch (e) {
    console.warn("no microphone:", e);
  }
  await pc.setRemoteDescription({type: "offer", sdp});
  await pc.setLocalDescription(await pc.createAnswer());
  await gathered(pc);
  await post("/api/signal", {call: r.call, type: "answer", sdp: pc.localDescription.sdp});
}
function gathered(pc) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((ok) => {
    const done = () => { if (pc.iceGatheringState === "complete") ok(); };
    pc.addEventListener("icegatheringstatechange", done);
    setTimeout(ok, 3000);  // host candidates come at once; never wait long for more
  });
}
// for tests and diagnostics: audio bytes received from staff
window.voiceStats = async () => {
  if (!rtc || !rtc.pc) return {connected: false, audioBytes: 0};
  let audioBytes = 0, packets = 0, lost = 0, jitter = 0;
  let route = null;  // candidate types of the selected pair: [local, remote], e.g. relay
  const report = await rtc.pc.getStats();
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
  const pc = rtc.pc;
  return {connected: pc.connectionState === "connected", audioBytes, packets, lost, jitter,
          route, ice: pc.iceConnectionState, signaling: pc.signalingState};
};

$("call").addEventListener("click", () => post("/api/call").then(render));
$("cancel").addEventListener("click", () => post("/api/cancel").then(render));

async function poll() {
  try {
    render(await (await fetch("/api/state")).json());
  } catch (e) {
    document.body.classList.add("alert");
  }
  setTimeout(poll, 500);
}
poll();

// The crossing-labelling page: a local clip stepped frame by frame in a canvas, the counting
// line drawn on it, in/out marks kept in a list and saved as the JSON truth file that
// `mimamori ridership calibrate` and `mimamori ridership count --truth` read. The clip never
// leaves the browser. No inline script or style: the hub's CSP forbids them.
"use strict";
const video = document.getElementById("video");
const canvas = document.getElementById("frame");
const ctx = canvas.getContext("2d");
const status = document.getElementById("status");
const fpsInput = document.getElementById("fps");
const lineInput = document.getElementById("line");
const list = document.getElementById("marks");
const download = document.getElementById("download");
let frame = 0;
let frames = 0;
let clipName = "";
const marks = [];  // [frame, "in" | "out"]

function fps() {
  const v = Number(fpsInput.value);
  return v >= 1 && v <= 60 ? v : 10;
}

function line() {
  const parts = lineInput.value.split(",").map((p) => Number(p.trim()));
  if (parts.length !== 4 || parts.some((p) => !Number.isFinite(p))) return null;
  if (parts[0] === parts[2] && parts[1] === parts[3]) return null;
  return parts;
}

function draw() {
  if (!video.videoWidth) return;
  canvas.width = video.videoWidth;
  canvas.height = video.videoHeight;
  ctx.drawImage(video, 0, 0);
  const l = line();
  lineInput.setCustomValidity(l ? "" : "four numbers x1,y1,x2,y2, two different points");
  if (l) {
    const [x1, y1, x2, y2] = l;
    ctx.strokeStyle = "#ffd400";
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(x1, y1);
    ctx.lineTo(x2, y2);
    const len = Math.hypot(x2 - x1, y2 - y1);
    const nx = -(y2 - y1) / len;  // the "in" side: the line turned clockwise on screen
    const ny = (x2 - x1) / len;
    const mx = (x1 + x2) / 2;
    const my = (y1 + y2) / 2;
    ctx.moveTo(mx, my);
    ctx.lineTo(mx + nx * 30, my + ny * 30);
    ctx.stroke();
  }
  ctx.font = "bold 20px sans-serif";
  ctx.fillStyle = "#ffd400";
  ctx.fillText(`frame ${frame}`, 10, 26);
  status.textContent = `${clipName}: frame ${frame} of ${frames - 1}`;
}

function show(n) {
  if (!video.duration) return;
  frame = Math.max(0, Math.min(frames - 1, n));
  video.currentTime = (frame + 0.5) / fps();  // the middle of the frame: no rounding slip
}

function render() {
  list.replaceChildren();
  marks.sort((a, b) => a[0] - b[0]);
  marks.forEach((m, i) => {
    const li = document.createElement("li");
    const go = document.createElement("button");
    go.type = "button";
    go.textContent = `frame ${m[0]}: ${m[1]}`;
    go.addEventListener("click", () => show(m[0]));
    const rm = document.createElement("button");
    rm.type = "button";
    rm.textContent = "remove";
    rm.addEventListener("click", () => { marks.splice(i, 1); render(); });
    li.append(go, " ", rm);
    list.append(li);
  });
  const ins = marks.filter((m) => m[1] === "in").length;
  document.getElementById("totals").textContent = `in ${ins}, out ${marks.length - ins}`;
  download.disabled = !clipName || !line();
}

function mark(dir) {
  if (!clipName) return;
  marks.push([frame, dir]);
  render();
}

document.getElementById("clip").addEventListener("change", (e) => {
  const file = e.target.files[0];
  if (!file) return;
  clipName = file.name;
  marks.length = 0;
  video.src = URL.createObjectURL(file);
  render();
});
video.addEventListener("loadedmetadata", () => {
  frames = Math.max(1, Math.floor(video.duration * fps()));
  show(0);
});
video.addEventListener("seeked", draw);
video.addEventListener("error", () => {
  status.textContent = `${clipName}: this browser cannot play the clip (try an .mp4, H.264)`;
});
lineInput.addEventListener("input", () => { draw(); render(); });
fpsInput.addEventListener("change", () => {
  if (video.duration) frames = Math.max(1, Math.floor(video.duration * fps()));
  show(frame);
});
for (const b of document.querySelectorAll("[data-step]")) {
  b.addEventListener("click", () => show(frame + Number(b.dataset.step)));
}
document.getElementById("mark-in").addEventListener("click", () => mark("in"));
document.getElementById("mark-out").addEventListener("click", () => mark("out"));
document.addEventListener("keydown", (e) => {
  if (e.target instanceof HTMLInputElement || e.target instanceof HTMLTextAreaElement) return;
  const step = e.shiftKey ? 10 : 1;
  if (e.key === "ArrowRight") show(frame + step);
  else if (e.key === "ArrowLeft") show(frame - step);
  else if (e.key === "i") mark("in");
  else if (e.key === "o") mark("out");
  else return;
  e.preventDefault();
});
download.addEventListener("click", () => {
  const truth = {
    video: clipName,
    line: line(),
    fps: fps(),
    in_means: "crossing toward the side the line points to when turned clockwise on screen",
    how_counted: document.getElementById("how").value,
    crossings: marks.map((m) => [m[0], m[1]]),
  };
  const blob = new Blob([JSON.stringify(truth, null, 1)], { type: "application/json" });
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = `${clipName.replace(/\.[^.]+$/, "")}.truth.json`;
  a.click();
  setTimeout(() => URL.revokeObjectURL(a.href), 1000);
});
render();

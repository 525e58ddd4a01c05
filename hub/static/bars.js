// The ridership page's bars, hour columns and OD shades: sized from data attributes here,
// because the hub's Content-Security-Policy allows no inline style attribute.
"use strict";
for (const el of document.querySelectorAll("[data-width]")) {
  el.style.width = `${Number(el.dataset.width)}%`;
}
for (const el of document.querySelectorAll("[data-height]")) {
  el.style.height = `${Number(el.dataset.height)}px`;
}
for (const el of document.querySelectorAll("[data-shade]")) {
  const alpha = Number(el.dataset.shade);
  el.style.background = `rgba(47, 107, 79, ${alpha})`;
  if (alpha > 0.425) el.style.color = "#fff";  // darker than half the busiest cell
}

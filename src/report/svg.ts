// Plain SVG, built as text: horizontal bars, a step line and heat cells are all the report draws,
// so a few functions do it with no chart library and nothing for the page to load. Every piece of
// text that comes from data goes through `esc`.

/** Escapes text for HTML/SVG content and attribute values (quotes included). */
export function esc(text: string | number): string {
  return String(text).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/** A label at most `max` characters long (an ellipsis marks a cut); the full text goes in a <title>. */
export function clip(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : `${chars.slice(0, max - 1).join("")}…`;
}

const n = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(1));

function svg(width: number, height: number, body: string, label: string): string {
  // No xmlns: inline in HTML, the parser puts <svg> in the SVG namespace itself.
  return `<svg width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${esc(label)}">${body}</svg>`;
}

function text(x: number, y: number, content: string, attrs = ""): string {
  return `<text x="${n(x)}" y="${n(y)}"${attrs ? ` ${attrs}` : ""}>${esc(content)}</text>`;
}

export interface Bar {
  label: string;
  /** Where the bar starts on the value axis (a timeline's offset); 0 for a plain bar chart. */
  start?: number;
  value: number;
  /** The figure printed after the bar. */
  caption: string;
}

/** Horizontal bars, one a row, on one value axis (a Gantt-like timeline when bars have a start). */
export function barChart(bars: readonly Bar[], opts: { label: string; labelWidth?: number; width?: number }): string {
  const labelWidth = opts.labelWidth ?? 180;
  const width = opts.width ?? 900;
  const row = 22;
  const plot = width - labelWidth - 160; // room for the caption after the longest bar
  const max = Math.max(1e-9, ...bars.map((b) => (b.start ?? 0) + b.value));
  const body = bars
    .map((b, i) => {
      const y = 6 + i * row;
      const x = labelWidth + ((b.start ?? 0) / max) * plot;
      const w = Math.max(1, (b.value / max) * plot);
      return (
        `<g class="bar"><title>${esc(`${b.label}: ${b.caption}`)}</title>` +
        text(labelWidth - 6, y + 14, clip(b.label, Math.floor(labelWidth / 7)), 'text-anchor="end"') +
        `<rect x="${n(x)}" y="${y + 2}" width="${n(w)}" height="${row - 6}"/>` +
        text(x + w + 4, y + 14, b.caption) +
        `</g>`
      );
    })
    .join("");
  return svg(width, bars.length * row + 12, body, opts.label);
}

/** A step line through (x, y) points, from (0, 0), with its axes' end values written at the ends. */
export function stepChart(
  points: ReadonlyArray<{ x: number; y: number }>,
  opts: { label: string; xUnit: string; axes: string; width?: number; height?: number },
): string {
  const width = opts.width ?? 900;
  const height = opts.height ?? 220;
  const left = 50;
  const bottom = 30;
  const plotW = width - left - 20;
  const plotH = height - bottom - 10;
  const maxX = Math.max(1e-9, ...points.map((p) => p.x));
  const maxY = Math.max(1, ...points.map((p) => p.y));
  const px = (x: number) => left + (x / maxX) * plotW;
  const py = (y: number) => 10 + plotH - (y / maxY) * plotH;
  let d = `M${n(px(0))} ${n(py(0))}`;
  for (const p of points) d += ` H${n(px(p.x))} V${n(py(p.y))}`;
  const axes =
    `<path class="axis" d="M${left} 10 V${10 + plotH} H${left + plotW}"/>` +
    text(left - 4, 14, `${maxY}`, 'text-anchor="end"') +
    text(left - 4, 10 + plotH, "0", 'text-anchor="end"') +
    text(left, height - 8, "0 s") +
    text(left + plotW, height - 8, `${maxX.toFixed(1)} ${opts.xUnit}`, 'text-anchor="end"') +
    text(left + plotW / 2, height - 8, opts.axes, 'text-anchor="middle" class="muted"');
  return svg(width, height, `${axes}<path class="line" d="${d}"/>`, opts.label);
}

export interface HeatMap {
  rows: readonly string[];
  /** Column labels (shown every few columns, each with its tooltip) and their short name in a cell's tooltip. */
  columns: ReadonlyArray<{ label: string; title: string; short: string }>;
  /** values[row][column] in [0, 1]; NaN: unknown. */
  values: ReadonlyArray<ArrayLike<number>>;
  /** How a value reads in a tooltip ("12.5% null"). */
  describe: (value: number) => string;
  /** The CSS class of the cells' colour scale ("nulls" or "coverage"). */
  scale: string;
}

/** Cell fill for a value in [0, 1]: ten steps of one hue (CSS classes s0..s9), "unknown" for NaN. */
function step(value: number): string {
  return Number.isNaN(value) ? "unknown" : `s${Math.min(9, Math.max(0, Math.floor(value * 10)))}`;
}

/**
 * One cell per (row, column): rows labelled on the left, columns every few cells below. Cells are
 * kept short (a row's cells share its <g>'s offset, tooltips name the column briefly) since the
 * full shape draws a few thousand of them.
 */
export function heatMap(map: HeatMap, opts: { label: string; labelWidth?: number; width?: number; rowHeight?: number }): string {
  const labelWidth = opts.labelWidth ?? 170;
  const width = opts.width ?? 900;
  const rowH = opts.rowHeight ?? 16;
  const cols = Math.max(1, map.columns.length);
  const cell = Math.max(3, Math.min(28, Math.floor((width - labelWidth - 10) / cols)));
  const every = Math.max(1, Math.ceil(95 / cell));
  let body = "";
  map.rows.forEach((row, r) => {
    const values = map.values[r]!;
    body += `<g transform="translate(0 ${4 + r * rowH})">` + text(labelWidth - 6, rowH - 4, clip(row, Math.floor(labelWidth / 7)), 'text-anchor="end"');
    for (let c = 0; c < map.columns.length; c++) {
      const v = values[c]!;
      body += `<rect class="cell ${step(v)}" x="${labelWidth + c * cell}" width="${cell - 1}" height="${rowH - 1}"><title>${esc(`${row}, ${map.columns[c]!.short}: ${map.describe(v)}`)}</title></rect>`;
    }
    body += "</g>";
  });
  const axisY = 4 + map.rows.length * rowH;
  map.columns.forEach((col, c) => {
    if (c % every === 0)
      body += `<g class="tick"><title>${esc(col.title)}</title><path class="axis" d="M${labelWidth + c * cell + 0.5} ${axisY} v4"/>${text(labelWidth + c * cell, axisY + 15, col.label, 'class="muted"')}</g>`;
  });
  const used = labelWidth + map.columns.length * cell + 90;
  return svg(Math.max(used, 320), axisY + 22, `<g class="${esc(map.scale)}${rowH < 14 ? " small" : ""}">${body}</g>`, opts.label);
}

/** The colour scale's legend: ten steps from 0 to 100 %. */
export function legend(scale: string, low: string, high: string): string {
  const cells = Array.from({ length: 10 }, (_, i) => `<rect class="cell s${i}" x="${60 + i * 18}" y="2" width="17" height="12"/>`).join("");
  return svg(
    420,
    18,
    `<g class="${esc(scale)}">${text(54, 12, low, 'text-anchor="end"')}${cells}${text(244, 12, high)}<rect class="cell unknown" x="350" y="2" width="12" height="12"><title>no statistics</title></rect>${text(366, 12, "n/a")}</g>`,
    `legend: ${low} to ${high}`,
  );
}

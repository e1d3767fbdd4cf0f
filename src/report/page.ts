// The run report as one self-contained HTML page: inline CSS, inline SVG, no script, no font,
// image or link to fetch (the Content-Security-Policy says so to the browser too).
import { formatBytes, formatSeconds } from "../units.ts";
import type { ReportData } from "./model.ts";
import { barChart, clip, esc, heatMap, legend, stepChart } from "./svg.ts";

/** Most names a list of schema changes shows before "... and N more". */
const LIST_LIMIT = 100;

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1220px;padding:0 16px;color:#1d2733}
h1{font-size:22px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #d5dbe1;padding-bottom:4px}h3{font-size:15px;margin:16px 0 6px}
.muted,svg .muted{color:#5b6773;fill:#5b6773}
table{border-collapse:collapse;margin:6px 0}td,th{padding:2px 10px 2px 0;text-align:left;vertical-align:top}th{font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#1a7f37}.bad{color:#c62828}.warn{color:#9a6700}
ul{margin:4px 0;padding-left:20px}code{font-size:12px}
figure{margin:8px 0;overflow-x:auto}figcaption{color:#5b6773;font-size:12px}
svg{display:block}svg text{font:11px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;fill:#1d2733}
.bar rect{fill:#4a78a8}.line{fill:none;stroke:#4a78a8;stroke-width:2}.axis{fill:none;stroke:#9aa5b1}
.cell.unknown{fill:#d9d9d9}svg .small text{font-size:9px}
.nulls .s0{fill:#f7fbff}.nulls .s1{fill:#deebf7}.nulls .s2{fill:#c6dbef}.nulls .s3{fill:#9ecae1}.nulls .s4{fill:#6baed6}.nulls .s5{fill:#4292c6}.nulls .s6{fill:#2171b5}.nulls .s7{fill:#08519c}.nulls .s8{fill:#08306b}.nulls .s9{fill:#041a3a}
.coverage .s0{fill:#a50026}.coverage .s1{fill:#d73027}.coverage .s2{fill:#f46d43}.coverage .s3{fill:#fdae61}.coverage .s4{fill:#fee08b}.coverage .s5{fill:#d9ef8b}.coverage .s6{fill:#a6d96a}.coverage .s7{fill:#66bd63}.coverage .s8{fill:#1a9850}.coverage .s9{fill:#006837}
details summary{cursor:pointer;color:#4a78a8}.cols{display:flex;flex-wrap:wrap;gap:16px 64px;align-items:flex-start}.cols h3{margin-top:0}.narrow{max-width:560px}
`;

const pct = (v: number) => (Number.isNaN(v) ? "n/a" : `${(v * 100).toFixed(v > 0 && v < 0.001 ? 3 : 1)}%`);
const int = (v: number) => v.toLocaleString("en-US");
const tables = (n: number) => `${int(n)} table${n === 1 ? "" : "s"}`;

function list(items: readonly string[], empty: string): string {
  if (items.length === 0) return `<p class="muted">${esc(empty)}</p>`;
  const shown = items
    .slice(0, LIST_LIMIT)
    .map((i) => `<li><code>${esc(i)}</code></li>`)
    .join("");
  return `<ul>${shown}${items.length > LIST_LIMIT ? `<li class="muted">... and ${items.length - LIST_LIMIT} more</li>` : ""}</ul>`;
}

function rows(cells: ReadonlyArray<ReadonlyArray<string>>, head: readonly string[], numeric: readonly number[] = []): string {
  const th = head.map((h) => `<th>${esc(h)}</th>`).join("");
  const body = cells.map((r) => `<tr>${r.map((c, i) => `<td${numeric.includes(i) ? ' class="num"' : ""}>${esc(c)}</td>`).join("")}</tr>`).join("");
  return `<table><thead><tr>${th}</tr></thead><tbody>${body}</tbody></table>`;
}

const DAY_MS = 86_400_000;

/** Row groups as heat-map columns: labelled by their first time (the day, or the minute when all fit in two days), else by index. */
function rowGroupColumns(data: ReportData): Array<{ label: string; title: string; short: string }> {
  const first = data.rowGroups[0]?.from;
  const last = data.rowGroups.at(-1)?.to;
  const ms = (label: string) => Date.parse(`${label.replace(" ", "T")}:00Z`);
  const short = first && last && ms(last) - ms(first) < 2 * DAY_MS;
  return data.rowGroups.map((g) => ({
    label: g.from ? (short ? g.from.slice(5) : g.from.slice(0, 10)) : `rg ${g.index}`,
    title: `row group ${g.index}${g.from ? ` (${g.from} to ${g.to})` : ""}, ${int(g.rows)} rows`,
    short: `row group ${g.index}`,
  }));
}

function shapeSection(data: ReportData): string {
  const { shape, file } = data;
  const facts: Array<[string, string]> = [
    ["rows", int(shape.rows)],
    ["columns", `${int(shape.columns)} (${int(shape.features)} features)`],
    ["tables", int(shape.tables)],
    ["row groups", int(shape.rowGroups)],
    ["file size", `${formatBytes(file.bytes)} (${int(file.bytes)} bytes)`],
    ["footer size", `${formatBytes(file.footerBytes)} (${int(file.footerBytes)} bytes)`],
    ["CRC32C", file.crc32c],
  ];
  return (
    `<h2 id="shape">Shape</h2><div class="cols"><div>` +
    `<table>${facts.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("")}</table></div>` +
    `<div><h3 id="families">Columns and nulls by family</h3>` +
    rows(familyRows(data), ["family", "tables", "columns", "null cells", "null rate", "entirely null columns"], [1, 2, 3, 4, 5]) +
    `<p class="muted">nulls from the validation report (the key aside)</p></div></div>`
  );
}

/** One line per family: its tables and columns (discovery), its nulls (validation; the targets' under "target"). */
function familyRows(data: ReportData): string[][] {
  const nulls = data.validation.nulls;
  const nullCells = (family: string) => {
    const n = nulls[family];
    return n ? [int(n.nullCells), pct(n.nullRate), int(n.entirelyNull.length)] : ["", "", ""];
  };
  const listed = data.shape.columnsByFamily.map((f, i) => [f.family, int(f.tables), int(f.columns), ...nullCells(i === 0 ? "target" : f.family)]);
  const known = new Set(["target", ...data.shape.columnsByFamily.map((f) => f.family)]);
  const others = Object.keys(nulls)
    .filter((f) => !known.has(f))
    .sort()
    .map((f) => [f, "", int(nulls[f]!.columns), ...nullCells(f)]);
  return [...listed, ...others];
}

function timeSection(data: ReportData): string {
  const stages = barChart(
    data.stages.map((s) => ({ label: s.name, start: s.startSeconds, value: s.seconds, caption: formatSeconds(s.seconds) })),
    { label: "stage timeline", labelWidth: 100 },
  );
  const { progress, reusedTables, slowest } = data.extraction;
  const read = progress.length;
  const rate =
    read > 0
      ? `<figure id="extraction-rate">${stepChart(progress, { label: "tables extracted over time", xUnit: "s", axes: "tables done, against seconds since the extract stage began" })}<figcaption>${esc(
          `${tables(read)} read and staged this run, the last at ${formatSeconds(progress.at(-1)!.x)} into the extract stage` +
            (reusedTables > 0 ? `; ${tables(reusedTables)} reused from an earlier attempt's parts` : ""),
        )}</figcaption></figure>`
      : `<p class="muted">${esc(`no table was read this run: all ${int(reusedTables)} were reused from an earlier attempt's parts`)}</p>`;
  const slow =
    slowest.length > 0
      ? `<figure id="slowest-tables">${barChart(
          slowest.map((t) => ({
            label: t.table,
            value: t.seconds,
            caption: `${formatSeconds(t.seconds)}, ${int(t.rows)} rows${t.parts > 1 ? `, ${t.parts} parts` : ""}`,
          })),
          { label: "slowest tables", labelWidth: 330 },
        )}</figure>`
      : "";
  return (
    `<h2 id="timeline">Stage timeline</h2>` +
    `<figure id="stage-timeline">${stages}<figcaption>${esc("each stage from its start to its end; the report and cleanup stages run after this page is written")}</figcaption></figure>` +
    `<h2 id="extraction">Extraction</h2>${rate}` +
    (slow
      ? `<h3>Slowest ${slowest.length} tables</h3>${slow}<p class="muted">from a table's first read to its last part staged in the bucket, waits for the pool included</p>`
      : "")
  );
}

function nullSection(data: ReportData): string {
  const columns = rowGroupColumns(data);
  const heat = heatMap(
    { rows: data.nullHeat.families, columns, values: data.nullHeat.values, describe: (v) => `${pct(v)} null`, scale: "nulls" },
    { label: "null share by feature family and row group", labelWidth: 150, width: 1180 },
  );
  const coverage = heatMap(
    { rows: data.targetCoverage.columns, columns, values: data.targetCoverage.values, describe: (v) => `${pct(v)} not null`, scale: "coverage" },
    { label: "target coverage by row group", labelWidth: 150, width: 1180, rowHeight: 11 },
  );
  const groups = rows(
    data.rowGroups.map((g) => [String(g.index), int(g.rows), g.from ?? "", g.to ?? ""]),
    ["row group", "rows", "first interval_time", "last interval_time"],
    [0, 1],
  );
  const timed = data.rowGroups.some((g) => g.from);
  return (
    `<h2 id="nulls">Nulls by family and row group</h2>` +
    `<p class="muted">${esc(`one cell per feature family and row group (rows are in time order): null cells / cells, from the footer's null counts; nothing of the file is decoded. Columns are labelled ${timed ? "by the first interval_time of each row group" : "by row-group index"}.`)}</p>` +
    legend("nulls", "0% null", "100% null") +
    `<figure id="null-heat-map">${heat}</figure>` +
    `<details><summary>${esc(`the ${data.rowGroups.length} row groups`)}</summary>${groups}</details>` +
    `<h2 id="targets">Target coverage</h2>` +
    `<p class="muted">${esc("the share of non-null values of each of the 49 targets (target_bqx<window>_h<horizon>) per row group")}</p>` +
    legend("coverage", "0% set", "100% set") +
    `<figure id="target-coverage">${coverage}</figure>`
  );
}

function validationSection(data: ReportData): string {
  const v = data.validation;
  const horizons = Object.entries(v.horizons)
    .map(([h, ok]) => `<span class="${ok ? "ok" : "bad"}">${esc(h)}${ok ? "" : " missing"}</span>`)
    .join(", ");
  return (
    `<h2 id="validation">Validation</h2>` +
    `<p><strong class="${v.ok ? "ok" : "bad"}">${v.ok ? "passed" : "failed"}</strong>: ${esc(`${int(v.rows)} rows, ${int(v.columns)} columns, ${v.targetsPresent}/49 targets, overall null rate ${v.overallNullRate === null ? "n/a" : pct(v.overallNullRate)}`)}</p>` +
    `<p>horizons: ${horizons}</p>` +
    `<div class="cols"><div class="narrow"><h3>Errors</h3>${list(v.errors, "none")}</div>` +
    `<div class="narrow"><h3>Warnings</h3>${list(v.warnings, "none")}</div></div>` +
    `<p class="muted">nulls by family: in <a href="#families">the shape's family table</a></p>`
  );
}

function schemaSection(data: ReportData): string {
  const c = data.schemaChange;
  const heading = `<h2 id="schema">Schema changes since the previous file</h2>`;
  if (!c) return `${heading}<p class="muted">not recorded</p>`;
  const previous = c.previous
    ? `${c.previous.rows === null ? "?" : int(c.previous.rows)} rows x ${c.previous.columns === null ? "?" : int(c.previous.columns)} columns, built ${c.previous.createdAt ?? "?"} (generation ${c.previous.generation ?? "?"})`
    : "none";
  const facts: Array<[string, string]> = [
    ["policy", `SCHEMA_CHANGE=${c.policy}`],
    ["previous file", previous],
    ["rows change", c.rowsChange === null ? "n/a" : `${c.rowsChange > 0 ? "+" : ""}${int(c.rowsChange)}`],
    ...(c.notCompared ? [["not compared", c.notCompared] as [string, string]] : []),
    ...(c.staleManifest ? [["stale manifest", c.staleManifest] as [string, string]] : []),
  ];
  const changes: Array<[string, string[]]> = [
    ["columns added", c.added],
    ["columns removed", c.removed],
    ["columns retyped", c.retyped.map((r) => `${r.column} (${r.table}): ${r.from} -> ${r.to}`)],
    ["tables added", c.tablesAdded],
    ["tables removed", c.tablesRemoved],
  ];
  const counts = changes.map(([what, items]) => `${what}: ${items.length}`).join(", ");
  return (
    heading +
    `<table>${facts.map(([k, v]) => `<tr><th>${esc(k)}</th><td>${esc(v)}</td></tr>`).join("")}</table>` +
    `<p>${esc(counts)}</p>` +
    changes
      .filter(([, items]) => items.length > 0)
      .map(([what, items]) => `<h3>${esc(`${what} (${items.length})`)}</h3>${list(items, "none")}`)
      .join("")
  );
}

/** The report page for one run: a pure function of its data. */
export function renderReport(data: ReportData): string {
  const title = `Run report: training_${data.pair}.parquet`;
  const who = `built ${data.createdAt}${data.execution ? ` by execution ${data.execution}` : ""}`;
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    // Nothing may load: no script, font, image or connection; only the inline styles apply.
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${esc(title)}</title><style>${CSS}</style></head><body>`,
    `<h1>${esc(title)}</h1>`,
    `<p class="muted">${esc(clip(data.file.uri, 300))}<br>${esc(who)}</p>`,
    shapeSection(data),
    timeSection(data),
    nullSection(data),
    validationSection(data),
    schemaSection(data),
    `<p class="muted">${esc("written by the job after the file was validated and published; one self-contained page (inline CSS and SVG, nothing to load)")}</p>`,
    "</body></html>",
    "",
  ].join("\n");
}

// The index across pairs (reports/index.html): each pair's latest file, from its manifest, with a
// link to its run report. Pure: the report stage lists and reads the manifests.
import { reportObjectName } from "../layout.ts";
import { formatBytes, formatSeconds } from "../units.ts";
import { esc } from "./svg.ts";

export type IndexEntry =
  | { pair: string; manifest: string; rows: number; columns: number; createdAt: string; buildSeconds: number | null; fileBytes: number | null; report: string }
  | { pair: string; manifest: string; unreadable: string };

/** `training_<pair>.manifest.json` -> its pair; undefined for any other name. */
export function pairOfManifest(name: string): string | undefined {
  return /^training_(.+)\.manifest\.json$/.exec(name)?.[1];
}

/** One index line from a manifest's text; a manifest that does not parse or lacks its shape is listed as unreadable. */
export function indexEntry(pair: string, manifest: string, text: string): IndexEntry {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return { pair, manifest, unreadable: `not JSON (${(err as Error).message})` };
  }
  const m = parsed as { rows?: unknown; columns?: unknown; run?: { createdAt?: unknown; stageSeconds?: unknown }; file?: { bytes?: unknown } } | null;
  const num = (v: unknown) => (typeof v === "number" && Number.isFinite(v) ? v : null);
  const rows = num(m?.rows);
  const columns = num(m?.columns);
  if (typeof m !== "object" || m === null || rows === null || columns === null) return { pair, manifest, unreadable: "no rows and columns in it" };
  const seconds = m.run?.stageSeconds;
  const stageValues = typeof seconds === "object" && seconds !== null ? Object.values(seconds).map(num) : [];
  return {
    pair,
    manifest,
    rows,
    columns,
    createdAt: typeof m.run?.createdAt === "string" ? m.run.createdAt : "",
    buildSeconds: stageValues.length > 0 && stageValues.every((s) => s !== null) ? stageValues.reduce((a: number, s) => a + s, 0) : null,
    fileBytes: num(m.file?.bytes),
    report: `../${reportObjectName(pair)}`,
  };
}

const CSS = `
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:24px auto;max-width:1100px;padding:0 16px;color:#1d2733}
h1{font-size:22px}table{border-collapse:collapse}td,th{padding:3px 14px 3px 0;text-align:left}td.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#5b6773}.bad{color:#c62828}a{color:#2f5f8f}
`;

/** The index page: one line per pair, in pair order. */
export function renderIndex(entries: readonly IndexEntry[], generatedAt: string): string {
  const sorted = [...entries].sort((a, b) => (a.pair < b.pair ? -1 : a.pair > b.pair ? 1 : 0));
  const line = (e: IndexEntry) =>
    "unreadable" in e
      ? `<tr><td>${esc(e.pair)}</td><td colspan="4" class="bad">${esc(`${e.manifest} is unreadable: ${e.unreadable}`)}</td><td></td></tr>`
      : `<tr><td>${esc(e.pair)}</td><td class="num">${esc(`${e.rows.toLocaleString("en-US")} x ${e.columns.toLocaleString("en-US")}`)}</td><td>${esc(e.createdAt)}</td>` +
        `<td class="num">${esc(e.buildSeconds === null ? "?" : formatSeconds(e.buildSeconds))}</td><td class="num">${esc(e.fileBytes === null ? "?" : formatBytes(e.fileBytes))}</td>` +
        `<td><a href="${esc(e.report.split("/").map(encodeURIComponent).join("/"))}">report</a></td></tr>`;
  return [
    "<!doctype html>",
    '<html lang="en"><head><meta charset="utf-8">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    `<title>Training files</title><style>${CSS}</style></head><body>`,
    "<h1>Training files</h1>",
    `<p class="muted">${esc(`the latest file of each pair in this bucket, from its manifest; rewritten ${generatedAt} after a publish`)}</p>`,
    `<table><thead><tr><th>pair</th><th>rows x columns</th><th>built</th><th>build time</th><th>file size</th><th>run report</th></tr></thead><tbody>`,
    sorted.map(line).join(""),
    "</tbody></table>",
    sorted.length === 0 ? '<p class="muted">no manifest in the bucket</p>' : "",
    "</body></html>",
    "",
  ].join("\n");
}

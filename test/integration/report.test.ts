// The run report and the index across pairs, written by the real job on a small warehouse and
// opened in headless Chromium: they render (headings, charts, one heat-map cell per family and row
// group), load nothing but their own file, and log no console message or page error. A report that
// cannot be written fails the run, with the file left published.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import type { Browser } from "puppeteer-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { launchChromium, openIsolated, type OpenedPage } from "../../scripts/dev/browser.ts";
import { runJob, type JobRun } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const PAIRS = ["eurusd", "gbpusd"];
const ROW_GROUP_ROWS = 10;
let dir: string;
let warehouse: string;
let run: JobRun;
let browser: Browser;
const bucket = () => path.join(dir, "bucket");

const envFor = (name: string, extra: Record<string, string> = {}) => ({
  WAREHOUSE: warehouse,
  OUTPUT_URI: path.join(dir, name),
  WORK_DIR: path.join(dir, `${name}-work`),
  MAX_WORKERS: "2",
  ROW_GROUP_ROWS: String(ROW_GROUP_ROWS),
  ...TINY_VALIDATION_ENV,
  ...extra,
});

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "report-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  await buildTinyWarehouse({ path: warehouse, pairs: PAIRS });
  // A manifest left damaged by something else: the index lists it as unreadable, the run goes on.
  await mkdir(bucket(), { recursive: true });
  await writeFile(path.join(bucket(), "training_usdjpy.manifest.json"), "{ not json");
  run = await runJob(envFor("bucket", { PAIRS: PAIRS.join(" ") }));
  if (run.code !== 0) throw new Error(`the job exited ${run.code}: ${run.stdout.slice(-3000)}${run.stderr}`);
  browser = await launchChromium();
}, 180_000);

afterAll(async () => {
  await browser?.close();
  await rm(dir, { recursive: true, force: true });
});

/** The report's own check (scripts/dev/browser.ts), and the page's own file must have loaded. */
async function open(file: string): Promise<OpenedPage> {
  const opened = await openIsolated(browser, file);
  expect(opened.ok).toBe(true);
  return opened;
}

/** Feature families as validation names them (the first word of each table's name), from the manifest. */
function familiesOf(manifest: { tables: { features: Array<{ table: string }> } }): Set<string> {
  return new Set(manifest.tables.features.map((t) => t.table.split(".").at(-1)!.split("_")[0]!));
}

describe("the run report", () => {
  it("is written beside each pair's file, and the run's summary line names it", async () => {
    for (const pair of PAIRS) expect(existsSync(path.join(bucket(), `training_${pair}.report.html`))).toBe(true);
    const done = run.lines.filter((l) => String(l.message).startsWith("done: "));
    expect(done.map((l) => l.report)).toEqual(PAIRS.map((p) => path.join(bucket(), `training_${p}.report.html`)));
    expect(String(done[0]!.message)).toMatch(/; report .*training_eurusd\.report\.html$/);
    expect(Object.keys(done[0]!.durations as object)).toEqual(["extract", "merge", "validate", "upload", "report", "cleanup"]);
    const stage = run.lines.find((l) => l.stage === "report" && l.report !== undefined);
    expect(stage).toMatchObject({ report: path.join(bucket(), "training_eurusd.report.html"), index: path.join(bucket(), "reports", "index.html") });
  });

  it("renders its sections and charts in Chromium, with one heat-map cell per family and row group, loading nothing else and logging nothing", async () => {
    const manifest = JSON.parse(await readFile(path.join(bucket(), "training_eurusd.manifest.json"), "utf8"));
    const { page, foreign, messages } = await open(path.join(bucket(), "training_eurusd.report.html"));
    try {
      expect(foreign).toEqual([]);
      expect(messages).toEqual([]);
      expect(await page.$eval("h1", (h) => h.textContent)).toBe("Run report: training_eurusd.parquet");
      expect(await page.$$eval("h2", (hs) => hs.map((h) => h.textContent))).toEqual([
        "Shape",
        "Stage timeline",
        "Extraction",
        "Nulls by family and row group",
        "Target coverage",
        "Validation",
        "Schema changes since the previous file",
      ]);
      const groups = manifest.rowGroups as number;
      expect(groups).toBe(Math.ceil(manifest.rows / ROW_GROUP_ROWS));
      const families = familiesOf(manifest);
      expect([...families].sort()).toEqual(["agg", "mom", "tri", "var"]);
      expect(await page.$$eval("#null-heat-map rect.cell", (r) => r.length)).toBe(families.size * groups);
      expect(await page.$$eval("#target-coverage rect.cell", (r) => r.length)).toBe(49 * groups);
      expect(await page.$$eval("#stage-timeline g.bar", (g) => g.map((b) => b.querySelector("text")!.textContent))).toEqual([
        "extract",
        "merge",
        "validate",
        "upload",
      ]);
      // Every table of the file was read this run: one step per table, the slowest 5 (all of them) drawn.
      expect(await page.$$eval("#slowest-tables g.bar", (g) => g.length)).toBe(1 + manifest.tables.features.length);
      // mom_bqx_<pair> has every other minute: half its cells null in each full row group.
      const titles = await page.$$eval("#null-heat-map rect.cell title", (ts) => ts.map((t) => t.textContent!));
      expect(titles.filter((t) => t.startsWith("mom, row group 0:"))).toEqual(["mom, row group 0: 50.0% null"]);
      // Row groups are labelled by their time range, from the key's statistics.
      expect(await page.$eval("#null-heat-map g.tick title", (t) => t.textContent)).toBe("row group 0 (2020-01-02 00:00 to 2020-01-02 00:09), 10 rows");
      // Drawn, not just present: the charts take space on the page.
      for (const id of ["#stage-timeline", "#extraction-rate", "#null-heat-map", "#target-coverage"]) {
        const box = await page.$eval(`${id} svg`, (s) => s.getBoundingClientRect().toJSON() as { width: number; height: number });
        expect(box.width, id).toBeGreaterThan(100);
        expect(box.height, id).toBeGreaterThan(10);
      }
      expect(await page.$eval("#validation + p", (p) => p.textContent)).toMatch(/^passed: /);
    } finally {
      await page.close();
    }
  });
});

describe("the index across pairs", () => {
  it("lists each pair's file with its shape and a working link to its report, and a damaged manifest as unreadable", async () => {
    const { page, foreign, messages } = await open(path.join(bucket(), "reports", "index.html"));
    try {
      expect(foreign).toEqual([]);
      expect(messages).toEqual([]);
      const rows = await page.$$eval("tbody tr", (trs) => trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
      expect(rows.map((r) => r[0])).toEqual(["eurusd", "gbpusd", "usdjpy"]);
      const eurusd = JSON.parse(await readFile(path.join(bucket(), "training_eurusd.manifest.json"), "utf8"));
      expect(rows[0]![1]).toBe(`${eurusd.rows} x ${eurusd.columns}`);
      expect(rows[0]![2]).toBe(eurusd.run.createdAt);
      expect(rows[2]![1]).toMatch(/^training_usdjpy\.manifest\.json is unreadable: /);
      const links = await page.$$eval("a", (as) => as.map((a) => (a as unknown as { href: string }).href));
      expect(links).toEqual(PAIRS.map((p) => pathToFileURL(path.join(bucket(), `training_${p}.report.html`)).href));
    } finally {
      await page.close();
    }
    expect(run.lines.find((l) => /index: training_usdjpy\.manifest\.json is unreadable/.test(String(l.message)))?.severity).toBe("WARNING");
  });
});

describe("the browser check itself", () => {
  it("catches and refuses a page's request for anything but its own file", async () => {
    const file = path.join(dir, "leaky.html");
    await writeFile(
      file,
      '<!doctype html><html><head><title>t</title><link rel="stylesheet" href="https://fonts.example.invalid/a.css"></head><body><img src="http://127.0.0.1:9/x.png" alt=""></body></html>',
    );
    const { page, foreign } = await open(file);
    await page.close();
    expect(foreign.sort()).toEqual(["http://127.0.0.1:9/x.png", "https://fonts.example.invalid/a.css"]);
  });
});

describe("a report that cannot be written", () => {
  it("fails the run with exit 1 and says the file stays published", async () => {
    const name = "blocked";
    // A non-empty directory where the report object would go: the bucket cannot put it there.
    await mkdir(path.join(dir, name, "training_eurusd.report.html", "x"), { recursive: true });
    const failed = await runJob(envFor(name, { TARGET_PAIR: "eurusd" }));
    expect(failed.code).toBe(1);
    const error = failed.lines.find((l) => l.stage === "report" && l.severity === "ERROR");
    expect(error).toMatchObject({ reason: "report-failed" });
    expect(String(error!.message)).toMatch(
      /could not write the run report .*training_eurusd\.report\.html: .*training_eurusd\.parquet and its manifest are published and stay/,
    );
    expect(existsSync(path.join(dir, name, "training_eurusd.parquet"))).toBe(true);
    expect(existsSync(path.join(dir, name, "training_eurusd.manifest.json"))).toBe(true);
  }, 120_000);
});

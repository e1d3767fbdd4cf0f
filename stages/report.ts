// Stage 5: once the file and its manifest are published, the run report
// (training_<pair>.report.html, beside the file) and the index across pairs (reports/index.html).
// Both are single self-contained pages rendered by src/report/ from what the run holds: the stage
// times, each table's extraction times, the merged footer's statistics per row group, the
// validation report and the schema change. Nothing of the file is read back.
// A report that cannot be written fails the run (exit 1) with the file left published.
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { isPreconditionFailure, type Bucket } from "../src/bucket/port.ts";
import { crc32cBase64 } from "../src/checksum.ts";
import { MANIFEST_READS_AT_ONCE, mapLimited } from "../src/concurrency.ts";
import { KEY_COLUMN, TARGET_COLUMNS } from "../src/constants.ts";
import { JobError, describeError } from "../src/errors.ts";
import { REPORT_INDEX_OBJECT, reportObjectName, trainingObjectName } from "../src/layout.ts";
import { rowGroupStats } from "../src/parquet/index.ts";
import { buildReportData, indexEntry, pairOfManifest, renderIndex, renderReport, type IndexEntry } from "../src/report/index.ts";
import { formatBytes } from "../src/units.ts";
import type { Stage, StageContext } from "./types.ts";

/** Times the index is rebuilt when manifests changed while it was being written (other tasks publishing). */
const INDEX_REBUILDS = 5;

/** Writes `html` to WORK_DIR, then puts it as `name` with its CRC32C verified by the bucket. */
async function putPage(ctx: StageContext, name: string, html: string, metadata: Record<string, string>) {
  await mkdir(ctx.layout.root, { recursive: true });
  const file = path.join(ctx.layout.root, name.replaceAll("/", "_"));
  const bytes = Buffer.from(html, "utf8");
  await writeFile(file, bytes);
  try {
    return await ctx.bucket.put(file, name, { crc32c: crc32cBase64(crc32c(bytes)) }, metadata);
  } finally {
    await rm(file, { force: true });
  }
}

function reportHtml(ctx: StageContext): string {
  const { config, state } = ctx;
  const { assembly, discovery, extraction, validation, uploaded } = state;
  if (!assembly || !discovery || !extraction || !validation || !uploaded) throw new Error("the report needs a published file");
  const { footer } = assembly.layout;
  const thrift = new Uint8Array(Buffer.concat([footer.body, footer.tail({})]));
  const data = buildReportData({
    pair: config.pair,
    createdAt: new Date().toISOString(),
    ...(config.cloudRun.execution ? { execution: config.cloudRun.execution } : {}),
    file: {
      uri: uploaded.training.uri,
      bytes: uploaded.training.bytes,
      // The published footer (its manifest metadata included) is what follows the parts' data.
      footerBytes: uploaded.training.bytes - assembly.layout.dataEnd - 8,
      crc32c: uploaded.training.crc32c,
      ...(uploaded.training.generation ? { generation: uploaded.training.generation } : {}),
    },
    stageSeconds: state.durations,
    tables: extraction.tables,
    featureTables: discovery.features.map((t) => ({ table: t.table, columns: t.columns.map((c) => c.target) })),
    targetColumns: TARGET_COLUMNS,
    stats: rowGroupStats(thrift, { rangeOf: KEY_COLUMN }),
    validation,
    ...(state.schemaChange ? { schemaChange: state.schemaChange } : {}),
  });
  return renderReport(data);
}

/** The manifests in the bucket. */
async function manifestNames(bucket: Bucket): Promise<string[]> {
  return (await bucket.list("training_")).filter((n) => pairOfManifest(n) !== undefined);
}

/** The manifests in the bucket now and their generations, to compare with what an index was built from. */
async function manifestGenerations(bucket: Bucket): Promise<string> {
  const names = await manifestNames(bucket);
  return (await mapLimited(names, MANIFEST_READS_AT_ONCE, async (n) => `${n}@${(await bucket.stat(n))?.generation ?? "gone"}`)).join("\n");
}

/**
 * Every pair's latest manifest in the bucket, read through the port (one that cannot be read is
 * listed as such), and the generations read: what the index built from them shows.
 */
async function indexEntries(ctx: StageContext, bucket: Bucket): Promise<{ entries: IndexEntry[]; read: string }> {
  const names = await manifestNames(bucket);
  const dir = path.join(ctx.layout.root, "index-manifests");
  await mkdir(dir, { recursive: true });
  try {
    const got = await mapLimited(names, MANIFEST_READS_AT_ONCE, async (name, i) => {
      const pair = pairOfManifest(name)!;
      const file = path.join(dir, `${i}.json`);
      try {
        const { generation } = await bucket.get(name, file);
        return { entry: indexEntry(pair, name, await readFile(file, "utf8")), read: `${name}@${generation ?? "gone"}` };
      } catch (err) {
        // Gone since the listing (another task replacing it), or damaged: listed, not fatal.
        const entry: IndexEntry = { pair, manifest: name, unreadable: describeError(err) };
        return { entry, read: `${name}@${(await bucket.stat(name).catch(() => undefined))?.generation ?? "gone"}` };
      }
    });
    return { entries: got.map((g) => g.entry), read: got.map((g) => g.read).join("\n") };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Rebuilds the index from every manifest and puts it whole. Several tasks of one execution may do
 * this at once; each checks after its put that the manifests (names and generations) are still
 * the ones it read, and rebuilds if not (or if another task's put came between its look and its
 * write: Cloud Storage's generation precondition). So the last writer's index is complete: a
 * manifest published after that check belongs to a task whose own index write comes later still.
 */
async function writeIndex(ctx: StageContext): Promise<{ entries: IndexEntry[]; bytes: number; rebuilds: number }> {
  for (let rebuilds = 0; ; rebuilds++) {
    const { entries, read } = await indexEntries(ctx, ctx.bucket);
    let put;
    try {
      put = await putPage(ctx, REPORT_INDEX_OBJECT, renderIndex(entries, new Date().toISOString()), {});
    } catch (err) {
      // Cloud Storage: another task put the index between this put's look and its write; build again.
      if (isPreconditionFailure(err) && rebuilds < INDEX_REBUILDS) continue;
      throw err;
    }
    if (rebuilds >= INDEX_REBUILDS || (await manifestGenerations(ctx.bucket)) === read) return { entries, bytes: put.bytes, rebuilds };
  }
}

export const reportStage: Stage = {
  name: "report",
  async run(ctx) {
    const { config, bucket, log, state } = ctx;
    if (!state.uploaded) throw new JobError("refusing to write a report: the file was not published", { reason: "not-uploaded" });
    const base = bucket.location.replace(/\/+$/, "");
    const published = `${base}/${trainingObjectName(config.pair)}`;
    const name = reportObjectName(config.pair);
    let step = `the run report ${base}/${name}`;
    try {
      const html = reportHtml(ctx);
      const report = await putPage(ctx, name, html, {
        pair: config.pair,
        ...(state.uploaded.training.generation ? { training_generation: state.uploaded.training.generation } : {}),
      });
      const uri = `${base}/${name}`;
      log.info({ uri, bytes: report.bytes }, `wrote the run report ${uri} (${formatBytes(report.bytes)})`);
      step = `the index ${base}/${REPORT_INDEX_OBJECT}`;
      const { entries, bytes: indexBytes, rebuilds } = await writeIndex(ctx);
      const indexUri = `${base}/${REPORT_INDEX_OBJECT}`;
      const unreadable = entries.filter((e) => "unreadable" in e);
      for (const e of unreadable)
        log.warn({ manifest: e.manifest }, `index: ${e.manifest} is unreadable (${"unreadable" in e ? e.unreadable : ""}); listed as such`);
      log.info({ uri: indexUri, pairs: entries.length, unreadable: unreadable.length, rebuilds }, `rewrote the index ${indexUri} (${entries.length} pairs)`);
      state.report = { uri, bytes: report.bytes, indexUri };
      return { report: uri, reportBytes: report.bytes, index: indexUri, indexBytes, pairs: entries.length };
    } catch (err) {
      if (ctx.signal.aborted) throw err;
      throw new JobError(`could not write ${step}: ${describeError(err)}; ${published} and its manifest are published and stay`, {
        reason: "report-failed",
        retryable: err instanceof JobError && err.retryable,
        fix: "run again to write the report (the staged parts are reused), or check write access to the bucket",
        cause: err,
      });
    }
  },
};

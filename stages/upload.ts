// Stage 4: put the file in the bucket. The manifest of its content goes into the footer's
// key/value metadata;
// head, parts and footer are composed into a temporary object whose size and CRC32C must equal
// the ones predicted from the parts'; only then is it moved to training_<pair>.parquet, with a
// generation precondition on what was there, so a good file is never replaced by an unverified
// one. The manifest object follows: the footer's manifest, the run's record (times, execution,
// settings, reused parts) and the file's size, CRC32C and generation, so the file and its manifest
// can never disagree about the content. Before any of it, the file's schema is compared with the
// published file's manifest (stages/schema-check.ts, SCHEMA_CHANGE).
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { crc32c } from "@node-rs/crc32";
import type { PutResult } from "../src/bucket/port.ts";
import { crc32cBase64 } from "../src/checksum.ts";
import { effectiveConfig } from "../src/config.ts";
import { JobError } from "../src/errors.ts";
import { manifestObjectName, trainingObjectName } from "../src/layout.ts";
import { composeFile, footerObject } from "../src/parts/assemble.ts";
import { schemaSha256OfFooter } from "../src/parquet/index.ts";
import { fileSchema } from "../src/schema-change.ts";
import { formatBytes } from "../src/units.ts";
import { checkSchemaChange } from "./schema-check.ts";
import type { Stage, StageContext } from "./types.ts";

export const MANIFEST_VERSION = 2;
export const MANIFEST_KEY = "bqx.manifest";

/** Configuration that decides the file's content (the rest decides only how it is built). */
const CONTENT_CONFIG = ["TARGET_PAIR", "FEATURES_DATASET", "TARGETS_DATASET", "DATE_FROM", "DATE_TO", "ROW_LIMIT", "ROW_GROUP_ROWS"] as const;

/**
 * What the footer carries: the file's content, described so that the same warehouse gives the
 * same bytes whichever backend, budget or attempt built it (no times, no run settings).
 */
function contentManifest(ctx: StageContext): Record<string, unknown> {
  const { config, state } = ctx;
  const { extraction, validation, discovery } = state;
  const effective = effectiveConfig(config);
  return {
    manifestVersion: MANIFEST_VERSION,
    pair: config.pair,
    rows: validation!.rows,
    columns: validation!.columns,
    features: validation!.features,
    rowGroups: extraction!.plan.groups,
    rowsPerGroup: extraction!.plan.rowsPerGroup,
    query: Object.fromEntries(CONTENT_CONFIG.map((k) => [k, effective[k] ?? null])),
    tables: {
      target: { table: extraction!.tables[0]!.table, rows: extraction!.target.rows, keysSha256: extraction!.target.keysSha256 },
      features: extraction!.tables.slice(1).map((t) => ({ table: t.table, rows: t.rows })),
      skipped: discovery!.skipped,
      // Tables whose key has no time zone: its values were read as UTC.
      zonelessKeys: discovery!.zonelessKeys,
    },
    validation: { horizons: validation!.horizons, warnings: validation!.warnings, overallNullRate: validation!.overallNullRate, nulls: validation!.nulls },
  };
}

/** How this run built it: when, by which execution, how long each stage took, with what settings, which table versions it read and which parts it reused. */
function runRecord(ctx: StageContext): Record<string, unknown> {
  const { config, state } = ctx;
  return {
    createdAt: new Date().toISOString(),
    ...(config.cloudRun.execution ? { execution: config.cloudRun.execution } : {}),
    stageSeconds: state.durations,
    parts: state.assembly!.layout.parts.length,
    // Versions differ between warehouses for the same rows, so they live here, not in the footer.
    tables: state.extraction!.tables.map((t) => ({ table: t.table, version: t.version, parts: t.parts, reusedParts: t.reusedParts })),
    ...(state.extraction!.reads ? { bigqueryReads: state.extraction!.reads } : {}),
    ...(state.schemaChange ? { schemaChange: state.schemaChange } : {}),
    config: effectiveConfig(config),
  };
}

/** Head, parts and footer composed into a temporary object whose size and CRC32C equal the prediction from the parts'. */
async function composeVerified(ctx: StageContext, footer: Buffer) {
  const { config, state, bucket, log } = ctx;
  const scratch = path.join(ctx.layout.root, "assembly");
  await mkdir(scratch, { recursive: true });
  const writeTemp = async (name: string, data: Buffer) => {
    const file = path.join(scratch, name);
    await writeFile(file, data);
    return file;
  };
  let composed;
  try {
    composed = await composeFile(bucket, config.pair, state.assembly!.layout, footer, writeTemp, ctx.signal);
  } finally {
    await rm(scratch, { recursive: true, force: true });
  }
  const predicted = { bytes: composed.bytes, crc32c: crc32cBase64(composed.crc32c) };
  log.info(
    {
      object: composed.object.name,
      bytes: composed.bytes,
      crc32c: predicted.crc32c,
      componentCount: composed.object.componentCount,
      composeCalls: composed.composeCalls,
    },
    `composed ${formatBytes(composed.bytes)} in ${composed.composeCalls} compose calls; size and CRC32C ${predicted.crc32c} match the prediction from the parts`,
  );
  return { composed, predicted };
}

/** The manifest object: the footer's manifest, the run's record and the published file's identity and schema. */
async function putManifest(ctx: StageContext, record: Record<string, unknown>, trainingGeneration: string | undefined): Promise<PutResult> {
  const { config, bucket } = ctx;
  await mkdir(ctx.layout.root, { recursive: true });
  const file = path.join(ctx.layout.root, manifestObjectName(config.pair));
  await writeFile(file, `${JSON.stringify(record, null, 2)}\n`);
  try {
    return await bucket.put(
      file,
      manifestObjectName(config.pair),
      { crc32c: crc32cBase64(crc32c(await readFile(file))) },
      { pair: config.pair, ...(trainingGeneration ? { training_generation: trainingGeneration } : {}) },
    );
  } finally {
    await rm(file, { force: true });
  }
}

export const uploadStage: Stage = {
  name: "upload",
  async run(ctx) {
    const { config, state, bucket, log } = ctx;
    const { assembly, validation } = state;
    if (!assembly || !validation?.ok) throw new JobError("refusing to publish: the file has not passed validation", { reason: "not-validated" });
    // Before anything is composed: with SCHEMA_CHANGE=fail a changed schema stops the run here.
    const schema = fileSchema(assembly.layout.parts);
    state.schemaChange = await checkSchemaChange(ctx, { rows: validation.rows, schema });
    const manifest = contentManifest(ctx);
    const footer = footerObject(assembly.layout, {
      "bqx.pair": config.pair,
      "bqx.tables": String(state.extraction!.tables.length),
      [MANIFEST_KEY]: JSON.stringify(manifest),
    });
    const { composed, predicted } = await composeVerified(ctx, footer);

    const name = trainingObjectName(config.pair);
    const before = await bucket.stat(name);
    const schemaHash = schemaSha256OfFooter(footer.subarray(0, footer.length - 8));
    // Object metadata lets a consumer check the file's shape (and compare schemas across pairs
    // and runs) from a listing, without downloading 15 GiB.
    const metadata = {
      pair: config.pair,
      rows: String(validation.rows),
      columns: String(validation.columns),
      schema_sha256: schemaHash,
      ...(config.cloudRun.execution ? { execution: config.cloudRun.execution } : {}),
    };
    const published = await bucket.move({ name: composed.object.name, generation: composed.object.generation! }, name, {
      ifGenerationMatch: before?.generation ?? "0",
      metadata,
      contentType: "application/vnd.apache.parquet",
      expected: predicted,
    });
    const uri = `${bucket.location.replace(/\/+$/, "")}/${name}`;
    const { bytes, crc32c: crc, generation, componentCount } = published;
    log.info(
      { uri, bytes, crc32c: crc, generation, replaced: before?.generation ?? null, schemaSha256: schemaHash },
      `published ${uri} (CRC32C verified, generation ${generation})`,
    );

    // The file's identity, and its schema by table so the next run can compare (kept out of the
    // footer: the file's own schema says it there).
    const file = { object: name, uri, bytes, crc32c: crc, generation, componentCount: componentCount ?? null, schemaSha256: schemaHash, schema };
    const manifestUpload = await putManifest(ctx, { ...manifest, run: runRecord(ctx), file }, generation);
    state.uploaded = { training: { ...published, uri }, manifest: manifestUpload, composeCalls: composed.composeCalls, predictedCrc32c: predicted.crc32c };
    return { uri, bytes, crc32c: crc, generation, composeCalls: composed.composeCalls, componentCount, schemaSha256: schemaHash, manifest: manifestUpload.uri };
  },
};

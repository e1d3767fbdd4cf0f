// Stage 4: copy the validated file and its manifest to the bucket, verifying checksums.
import { rm, writeFile } from "node:fs/promises";
import { fileChecksums } from "../src/checksum.ts";
import { effectiveConfig } from "../src/config.ts";
import { JobError } from "../src/errors.ts";
import { manifestObjectName, trainingObjectName } from "../src/layout.ts";
import { schemaSha256 } from "../src/schema-hash.ts";
import type { Stage } from "./types.ts";

export const MANIFEST_VERSION = 1;

export const uploadStage: Stage = {
  name: "upload",
  async run(ctx) {
    const { config, state, bucket, log } = ctx;
    const { merged, validation, discovery, checkpoints } = state;
    if (!merged || !validation?.ok || !discovery || !checkpoints) {
      throw new JobError("refusing to upload: the file has not passed validation", { reason: "not-validated" });
    }
    const local = await fileChecksums(merged.path);
    if (local.bytes !== merged.bytes) {
      throw new JobError(`${merged.path} changed size after validation (${merged.bytes} -> ${local.bytes} bytes)`, {
        reason: "file-changed",
        fix: "make sure nothing else writes to WORK_DIR while the job runs",
      });
    }
    // Object metadata lets a consumer check the file's shape (and compare schemas across pairs
    // and runs) from a listing, without downloading 9 GiB.
    const schemaHash = await schemaSha256(merged.path);
    // The execution that built it: a file left by an earlier run cannot pass for this one's.
    const execution = config.cloudRun.execution;
    const metadata = { pair: config.pair, rows: String(validation.rows), columns: String(validation.columns), schema_sha256: schemaHash, ...(execution ? { execution } : {}) };
    const training = await bucket.put(merged.path, trainingObjectName(config.pair), local, metadata);
    log.info(
      { uri: training.uri, bytes: training.bytes, crc32c: training.checksums.crc32c, generation: training.generation, schemaSha256: schemaHash },
      `uploaded ${training.uri} (checksum verified${training.generation ? `, generation ${training.generation}` : ""})`,
    );

    const manifest = {
      manifestVersion: MANIFEST_VERSION,
      pair: config.pair,
      ...(execution ? { execution } : {}),
      createdAt: new Date().toISOString(),
      file: {
        object: trainingObjectName(config.pair),
        uri: training.uri,
        bytes: training.bytes,
        ...training.checksums,
        ...(training.generation ? { generation: training.generation } : {}),
        schemaSha256: schemaHash,
      },
      rows: validation.rows,
      columns: validation.columns,
      features: validation.features,
      rowGroups: merged.rowGroups,
      tables: {
        target: { table: `${discovery.target.dataset}.${discovery.target.table}`, rows: checkpoints.target.rows },
        features: checkpoints.features.map((c) => ({ table: `${c.dataset}.${c.table}`, rows: c.rows, reused: c.reused })),
        skipped: discovery.skipped,
      },
      validation: { horizons: validation.horizons, warnings: validation.warnings, overallNullRate: validation.overallNullRate, nulls: validation.nulls },
      stageSeconds: state.durations,
      config: effectiveConfig(config),
    };
    const manifestPath = `${merged.path}.manifest.json`;
    await writeFile(manifestPath, `${JSON.stringify(manifest, null, 2)}\n`);
    const manifestUpload = await bucket.put(manifestPath, manifestObjectName(config.pair), await fileChecksums(manifestPath), {
      pair: config.pair,
      ...(training.generation ? { training_generation: training.generation } : {}),
    });
    await rm(manifestPath, { force: true });
    state.uploaded = { training, manifest: manifestUpload };
    return { uri: training.uri, bytes: training.bytes, crc32c: training.checksums.crc32c, generation: training.generation, schemaSha256: schemaHash, manifest: manifestUpload.uri };
  },
};

// The container contract, without a Docker engine: Dockerfile.cloudrun's runtime stage is
// reproduced in a clean directory (its `npm ci --omit=dev` really runs, under Node 24, against
// the lockfile), then its ENTRYPOINT runs the job end to end, on the embedded backend and through
// the Google client libraries against the stand-ins. This is what catches a dependency the image
// lacks (the original's first deploys failed on modules missing from the image) before a deploy.
import { existsSync } from "node:fs";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFooterSummary } from "../../src/parquet/footer.ts";
import { gcpStandInEnv, startBigQueryStandIns, type StandIns } from "../../standins/bigquery.ts";
import { buildRuntimeImage, installSize, runEntrypoint, type RuntimeImage } from "../../standins/container.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { ROOT } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse, type TinyPair } from "../../standins/tiny-warehouse.ts";

/** The production install measured 2026-11 at ~300 MiB; the original's image was 1.8 GB. */
const MAX_PRODUCTION_INSTALL_BYTES = 450 * 1024 ** 2;
const PAIR = "eurusd";
const OUTPUT_BUCKET = "bqx-contract-output";

let dir: string;
let image: RuntimeImage;
let warehouse: string;
let tiny: Record<string, TinyPair>;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "container-contract-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  [image, tiny] = await Promise.all([
    buildRuntimeImage({ contextDir: ROOT, outDir: path.join(dir, "image") }),
    buildTinyWarehouse({ path: warehouse, pairs: [PAIR] }),
  ]);
}, 300_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const localEnv = (name: string) => ({
  TARGET_PAIR: PAIR,
  WAREHOUSE: warehouse,
  OUTPUT_URI: path.join(dir, name, "bucket"),
  WORK_DIR: path.join(dir, name, "work"),
  MAX_WORKERS: "1",
  ...TINY_VALIDATION_ENV,
});

describe("the runtime image (Dockerfile.cloudrun's runtime stage, replayed)", () => {
  it("installs with npm ci --omit=dev and holds only node_modules, package.json, src and stages", async () => {
    expect(image.ran).toContainEqual(expect.stringMatching(/^npm ci --omit=dev\b/));
    expect((await readdir(image.workdir)).sort()).toEqual(["node_modules", "package.json", "src", "stages"]);
    expect(existsSync(path.join(image.workdir, "src", "main.ts"))).toBe(true);
  });

  it("holds the production dependencies and none of the development ones, within the size budget", async () => {
    const size = await installSize(path.join(image.workdir, "node_modules"));
    for (const name of [
      "@duckdb/node-api",
      "nodejs-polars",
      "nodejs-polars-linux-x64-gnu",
      "@google-cloud/storage",
      "@google-cloud/bigquery-storage",
      "pino",
      "piscina",
      "apache-arrow",
    ]) {
      expect(size.names, name).toContain(name);
    }
    for (const name of ["typescript", "vitest", "node"]) expect(size.names, name).not.toContain(name);
    expect(size.bytes).toBeLessThan(MAX_PRODUCTION_INSTALL_BYTES);
  });

  it("runs as the non-root node user with the image's environment", () => {
    expect(image.user).toBe("node");
    expect(image.entrypoint).toEqual(["node", "src/main.ts"]);
    expect(image.env).toMatchObject({ NODE_ENV: "production", LOG_FORMAT: "json" });
  });

  it("loads every module of src/ and stages/ from the production install (the Google clients included)", async () => {
    const modules: string[] = [];
    for (const top of ["src", "stages"]) {
      for (const entry of await readdir(path.join(image.workdir, top), { recursive: true })) {
        if (entry.endsWith(".ts") && entry !== "main.ts") modules.push(`./${top}/${entry}`);
      }
    }
    expect(modules.length).toBeGreaterThan(30);
    const script = path.join(image.workdir, "..", "load-all.mjs");
    await writeFile(
      script,
      `for (const m of ${JSON.stringify(modules)}) await import(new URL(m, "file://${image.workdir}/").href);\nconsole.log(JSON.stringify({ loaded: ${modules.length} }));\n`,
    );
    const run = await runEntrypoint({ ...image, entrypoint: ["node", script] }, {});
    expect(run.stderr).toBe("");
    expect(run.code).toBe(0);
    expect(run.lines).toEqual([{ loaded: modules.length }]);
  });
});

describe("the runtime image's entrypoint", () => {
  it("builds a validated training file end to end on the embedded backend and exits 0", async () => {
    const run = await runEntrypoint(image, localEnv("local"));
    expect(run.stderr).toBe("");
    expect(run.code, run.stdout.slice(-3000)).toBe(0);
    const footer = await readFooterSummary(path.join(dir, "local", "bucket", `training_${PAIR}.parquet`));
    expect(footer.numRows).toBe(tiny[PAIR]!.trainingRows);
    expect(footer.columnNames).toHaveLength(tiny[PAIR]!.columns);
    expect(run.lines.at(-1)?.message).toMatch(new RegExp(`^done: .*training_${PAIR}\\.parquet`));
    // The merge's polars loads in the merge stage, after the first warehouse request.
    expect(run.lines.find((l) => l.firstRequest !== undefined)).toMatchObject({ firstRequest: "preflight", startupMs: expect.any(Number) });
  });

  it("builds the file with BACKEND=gcp through the Google client libraries (BigQuery, Storage Read, Cloud Storage stand-ins)", async () => {
    let bq: StandIns | undefined;
    let gcs: GcsStandIn | undefined;
    try {
      bq = await startBigQueryStandIns({ warehouse });
      gcs = await startGcsStandIn({ buckets: [OUTPUT_BUCKET] });
      const { WAREHOUSE: _local, ...env } = localEnv("gcp");
      const run = await runEntrypoint(image, {
        ...env,
        ...gcpStandInEnv(bq, gcs.endpoint),
        OUTPUT_URI: `gs://${OUTPUT_BUCKET}/contract`,
      });
      expect(run.stderr).toBe("");
      expect(run.code, run.stdout.slice(-3000)).toBe(0);
      const stored = gcs.getObject(OUTPUT_BUCKET, `contract/training_${PAIR}.parquet`);
      expect(stored?.metadata).toMatchObject({ pair: PAIR, rows: String(tiny[PAIR]!.trainingRows), columns: String(tiny[PAIR]!.columns) });
    } finally {
      await bq?.close();
      await gcs?.close();
    }
  });

  it("exits 2 naming TARGET_PAIR when the pair comes as an argument instead of the variable", async () => {
    const { TARGET_PAIR: _unset, ...env } = localEnv("args");
    const run = await runEntrypoint(image, env, { args: [PAIR] });
    expect(run.code).toBe(2);
    expect(JSON.parse(run.stderr).problems).toEqual([expect.stringMatching(/^TARGET_PAIR: expected .*--update-env-vars TARGET_PAIR=<pair>/)]);
    expect(existsSync(path.join(dir, "args", "bucket"))).toBe(false);
  });

  it("stops on SIGTERM, which reaches Node directly through the exec-form entrypoint, and exits 130", async () => {
    const run = await runEntrypoint(image, localEnv("sigterm"), { stopWhen: (line) => line.firstRequest !== undefined });
    expect(run.code).toBe(130);
    expect(run.lines.map((l) => l.message)).toContainEqual(expect.stringMatching(/^received SIGTERM: stopping/));
    expect(existsSync(path.join(dir, "sigterm", "bucket", `training_${PAIR}.parquet`))).toBe(false);
  });
});

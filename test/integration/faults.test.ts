// Transient faults on the embedded backend. There is no network to break, so FAULT_RATE (refused
// unless set, logged loudly at start) makes a seeded fifth of the calls fail with the same
// retryable failure a real transient fault produces: table extractions (in the worker), the
// DuckDB discovery queries, and every call to the local bucket (write probe, the parts' puts,
// stat, readRange, list, compose, move, delete). The run must go through the real retry paths and
// still build a byte-identical file, with no staging copy and no staged part left. (The gcp backend's
// stand-ins inject their own 429/503s and dropped streams: test/integration/pipeline-gcp.test.ts.)
// A permanent fault fails fast, naming what is wrong and the fix.
import { readFile, readdir, rm } from "node:fs/promises";
import { existsSync } from "node:fs";

import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ReferenceRun, referenceRun, sha256 } from "../support/job-process.ts";
import { runJob } from "../support/run-job.ts";

const PAIR = "eurusd";
const FEATURES = 60;
const TRAINING = `training_${PAIR}.parquet`;
let dir: string;
let referenceSha: string;
let reference: ReferenceRun;

function env(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return reference.env(name, extra);
}

beforeAll(async () => {
  reference = await referenceRun("faults-test-", PAIR, FEATURES);
  ({ dir, sha: referenceSha } = reference);
}, 120_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("transient faults", () => {
  it.each([["7"], ["2026"]])(
    "a fifth of the warehouse and bucket calls failing (FAULT_SEED=%s) still ends in exit 0 with a byte-identical file",
    async (seed) => {
      const run = await runJob(env(`faults-${seed}`, { FAULT_RATE: "0.2", FAULT_SEED: seed }));
      expect(run.code, run.stdout.slice(-2000)).toBe(0);
      const messages = run.lines.map((l) => String(l.message));
      expect(messages[1]).toBe(
        `FAULT_RATE=0.2: about 20% of warehouse and bucket calls will fail with an injected transient fault (seed ${seed}); for testing the retry paths only`,
      );
      const injected = (pattern: RegExp) => messages.filter((m) => pattern.test(m) && / injected transient fault \(FAULT_RATE=0\.2\) /.test(m));
      const tables = injected(/^retrying \w+: /);
      const discovery = injected(/^retrying (preflight|listTables) \S+: /);
      const bucket = injected(/^retrying (checkWritable|put|stat|get|readRange|list|compose|move|delete) /);
      const byOperation = new Map<string, number>();
      for (const m of bucket) byOperation.set(m.split(" ")[1]!, (byOperation.get(m.split(" ")[1]!) ?? 0) + 1);
      const perOperation = [...byOperation].map(([op, n]) => `${op} ${n}`).join(", ");
      // About a fifth of the 61 tables' first attempts, and their retries' own draws.
      expect(tables.length).toBeGreaterThanOrEqual(6);
      // Each part is staged (two puts), checked or listed and deleted again after publishing: a few hundred bucket calls.
      expect(bucket.length).toBeGreaterThanOrEqual(10);
      expect(byOperation.size).toBeGreaterThanOrEqual(2);
      // Five discovery queries; the draws are seeded, and both seeds here hit at least one of them.
      expect(discovery.length).toBeGreaterThanOrEqual(1);
      console.log(
        `faults: FAULT_SEED=${seed}: ${tables.length} table extractions, ${discovery.length} discovery queries and ${bucket.length} bucket calls (${perOperation}) failed with an injected transient fault and were retried, over ${FEATURES + 1} tables`,
      );
      expect(await sha256(path.join(dir, `faults-${seed}`, "bucket", TRAINING))).toBe(referenceSha);
      // Nothing half-written: no staging copy anywhere in the bucket, and no staged part after publishing.
      const bucketDir = path.join(dir, `faults-${seed}`, "bucket");
      expect((await readdir(bucketDir, { recursive: true })).filter((n) => n.includes(".uploading-"))).toEqual([]);
      expect(existsSync(path.join(bucketDir, "_staging"))).toBe(false);
      const manifest = JSON.parse(await readFile(path.join(dir, `faults-${seed}`, "bucket", `training_${PAIR}.manifest.json`), "utf8"));
      expect(manifest.run.config).toMatchObject({ FAULT_RATE: 0.2, FAULT_SEED: Number(seed) });
    },
    90_000,
  );
});

describe("permanent faults fail fast", () => {
  it("a features dataset that does not exist: exit 1 within seconds, naming it, what exists and the variable to set", async () => {
    const started = Date.now();
    const run = await runJob(env("no-dataset", { FEATURES_DATASET: "bqx_ml_v9_missing" }));
    expect(run.code).toBe(1);
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(run.stdout).toMatch(
      /dataset bqx_ml_v9_missing not found in warehouse .* \(it has: bqx_ml_v3_analytics_v2, bqx_ml_v3_features_v2\)\. Fix: set FEATURES_DATASET \/ TARGETS_DATASET to datasets that exist/,
    );
    expect(run.lines.some((l) => /^retrying/.test(String(l.message)))).toBe(false);
    expect(await readdir(path.join(dir, "no-dataset", "bucket"))).toEqual([]);
  }, 30_000);
});

// The checkpoint store over a local directory bucket, with real checkpoint-shaped parquet files
// (tiny, in a temp directory): what is staged, what is restored, what is ignored, what fails.
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalDirectoryBucket } from "../../src/bucket/local.ts";
import type { Checksums } from "../../src/bucket/port.ts";
import { CheckpointStore, FINGERPRINT_METADATA, concurrencyLimit, type StoredCheckpoint } from "../../src/checkpoint-store.ts";
import { JobError } from "../../src/errors.ts";

let dir: string;
let n = 0;

/** A checkpoint file whose footer carries `fingerprint`, as the extractors write it. */
async function checkpoint(name: string, fingerprint: string, rows = 3): Promise<StoredCheckpoint> {
  const work = path.join(dir, `work-${++n}`);
  await mkdir(work, { recursive: true });
  const file = path.join(work, `ds.${name}.parquet`);
  const instance = await DuckDBInstance.create(":memory:");
  const c = await instance.connect();
  try {
    await c.run(`COPY (SELECT range AS x FROM range(${rows})) TO '${file}' (FORMAT parquet, KV_METADATA {"bqx.fingerprint": '${fingerprint}'})`);
  } finally {
    c.closeSync();
    instance.closeSync();
  }
  return { checkpointPath: file, fingerprint, label: `ds.${name}` };
}

/** The same checkpoint as a fresh container would plan it: same name, nothing on disk yet. */
function elsewhere(c: StoredCheckpoint): StoredCheckpoint {
  return { ...c, checkpointPath: path.join(dir, `fresh-${++n}`, path.basename(c.checkpointPath)) };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "checkpoint-store-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("CheckpointStore", () => {
  it("stages checkpoints under <pair>/checkpoints/ with their fingerprint, and restores matching ones into a fresh work dir", async () => {
    const bucket = new LocalDirectoryBucket(path.join(dir, "store-a"));
    const a = await checkpoint("a", "f".repeat(64));
    const b = await checkpoint("b", "e".repeat(64), 5);
    const first = new CheckpointStore(bucket, "eurusd");
    first.stage({ ...a, rows: 3 });
    first.stage(b);
    expect(await first.drain()).toMatchObject({ staged: 2 });
    expect(await bucket.list()).toEqual(["eurusd/checkpoints/ds.a.parquet", "eurusd/checkpoints/ds.b.parquet"]);
    expect((await bucket.stat("eurusd/checkpoints/ds.a.parquet"))?.metadata).toMatchObject({ [FINGERPRINT_METADATA]: a.fingerprint, table: "ds.a", rows: "3" });

    const [a2, b2] = [elsewhere(a), elsewhere(b)];
    const outcome = await new CheckpointStore(bucket, "eurusd").reconcile([a2, b2]);
    expect(outcome).toMatchObject({ stored: 2, stale: 0, unusable: 0, restaged: 0 });
    expect(outcome.restored.get(b2.checkpointPath)).toMatchObject({ rows: 5 });
    expect(await readFile(a2.checkpointPath)).toEqual(await readFile(a.checkpointPath));
  });

  it("ignores a stored checkpoint made by another query, and stages valid local ones the store lacks", async () => {
    const bucket = new LocalDirectoryBucket(path.join(dir, "store-b"));
    const old = await checkpoint("t", "1".repeat(64));
    const store = new CheckpointStore(bucket, "gbpusd");
    store.stage(old);
    await store.drain();
    const wanted = elsewhere({ ...old, fingerprint: "2".repeat(64) });
    const local = await checkpoint("local", "3".repeat(64));

    const outcome = await new CheckpointStore(bucket, "gbpusd").reconcile([wanted], [local]);
    expect(outcome.restored.size).toBe(0);
    expect(outcome).toMatchObject({ stored: 1, stale: 1, restaged: 1 });
    expect(existsSync(wanted.checkpointPath)).toBe(false);
  });

  it("does not restore an object whose footer names another query than its metadata, and removes the download", async () => {
    const bucket = new LocalDirectoryBucket(path.join(dir, "store-c"));
    const liar = await checkpoint("liar", "a".repeat(64));
    const sums = await import("../../src/checksum.ts").then((m) => m.fileChecksums(liar.checkpointPath));
    await bucket.put(liar.checkpointPath, "eurusd/checkpoints/ds.liar.parquet", sums, { [FINGERPRINT_METADATA]: "b".repeat(64) });
    const wanted = elsewhere({ ...liar, fingerprint: "b".repeat(64) });
    const warnings: string[] = [];
    const log = { info() {}, debug() {}, warn: (_o: unknown, m: string) => void warnings.push(m) };
    const outcome = await new CheckpointStore(bucket, "eurusd", { log: log as never }).reconcile([wanted]);
    expect(outcome).toMatchObject({ stored: 1, unusable: 1 });
    expect(outcome.restored.size).toBe(0);
    expect(existsSync(wanted.checkpointPath)).toBe(false);
    expect(warnings).toEqual([expect.stringMatching(/^cannot restore ds\.liar from the checkpoint store \(its footer names another query/)]);
  });

  it("runs at most the configured number of uploads at once", async () => {
    const inner = new LocalDirectoryBucket(path.join(dir, "store-d"));
    let active = 0;
    let peak = 0;
    const slow = Object.assign(Object.create(inner) as LocalDirectoryBucket, {
      async put(local: string, name: string, expected: Checksums, metadata?: Record<string, string>) {
        active += 1;
        peak = Math.max(peak, active);
        await sleep(20);
        try {
          return await inner.put(local, name, expected, metadata);
        } finally {
          active -= 1;
        }
      },
    });
    const store = new CheckpointStore(slow, "eurusd", { stagingConcurrency: 3 });
    const files: StoredCheckpoint[] = [];
    for (let i = 0; i < 10; i++) files.push(await checkpoint(`c${i}`, String(i).repeat(64)));
    for (const f of files) store.stage(f);
    expect(await store.drain()).toMatchObject({ staged: 10 });
    expect(peak).toBe(3);
  });

  it("reports the first staging failure once, names the table and the store, and fails drain with it", async () => {
    const file = path.join(dir, "not-a-directory");
    await writeFile(file, "x");
    const failures: JobError[] = [];
    const store = new CheckpointStore(new LocalDirectoryBucket(file), "eurusd", { onFailure: (e) => failures.push(e) });
    store.stage(await checkpoint("x", "9".repeat(64)));
    store.stage(await checkpoint("y", "8".repeat(64)));
    const err = await store.drain().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(JobError);
    expect((err as JobError).reason).toBe("checkpoint-staging-failed");
    expect((err as JobError).message).toMatch(/^cannot stage the checkpoint of ds\.[xy] in CHECKPOINT_URI \(.*not-a-directory\/eurusd\/checkpoints\/ds\.[xy]\.parquet\)/);
    expect(failures).toEqual([err]);
  });

  it("removes every staged object of the pair and leaves other pairs' alone", async () => {
    const bucket = new LocalDirectoryBucket(path.join(dir, "store-e"));
    for (const pair of ["eurusd", "usdjpy"]) {
      const store = new CheckpointStore(bucket, pair);
      store.stage(await checkpoint(`${pair}-1`, "5".repeat(64)));
      store.stage(await checkpoint(`${pair}-2`, "6".repeat(64)));
      await store.drain();
    }
    expect(await new CheckpointStore(bucket, "eurusd").removeAll()).toEqual({ removed: 2, left: [] });
    expect(await bucket.list()).toEqual(["usdjpy/checkpoints/ds.usdjpy-1.parquet", "usdjpy/checkpoints/ds.usdjpy-2.parquet"]);
  });
});

describe("concurrencyLimit", () => {
  it("starts queued work in call order as slots free up", async () => {
    const limit = concurrencyLimit(2);
    const started: number[] = [];
    await Promise.all([30, 10, 10, 10].map((ms, i) => limit(async () => {
      started.push(i);
      await sleep(ms);
    })));
    expect(started).toEqual([0, 1, 2, 3]);
  });
});

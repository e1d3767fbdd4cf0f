// Compose, move and ranged put on the local directory bucket, with real files: the same
// behaviour the Cloud Storage adapter shows against its stand-in (test/integration/gcs-compose.test.ts),
// by concatenation and rename; plus FAULT_RATE, FAULT_CORRUPT_UPLOADS and an interrupted run.
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalDirectoryBucket, type LocalDirectoryBucketOptions } from "../../src/bucket/local.ts";
import { isPreconditionFailure, type SourceObject } from "../../src/bucket/port.ts";
import { RetryingBucket } from "../../src/bucket/retrying.ts";
import { FaultyBucket } from "../../src/faults.ts";
import { crc32cBase64 } from "../../src/checksum.ts";
import { JobError } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";
import { rejection } from "../support/rejection.ts";

let dir = "";
let counter = 0;

const crcOf = (data: Buffer): string => crc32cBase64(crc32c(data));

/** A fresh bucket directory. */
function bucketAt(opts: LocalDirectoryBucketOptions = {}): { bucket: LocalDirectoryBucket; root: string } {
  const root = path.join(dir, `bucket-${++counter}`);
  return { bucket: new LocalDirectoryBucket(root, opts), root };
}

async function localTable(bytes: number): Promise<{ path: string; data: Buffer }> {
  const data = randomBytes(bytes);
  const file = path.join(dir, `table-${++counter}.parquet`);
  await writeFile(file, data);
  return { path: file, data };
}

/** Stages `count` parts of one local file with ranged puts; returns them pinned, and the whole. */
async function stageParts(bucket: LocalDirectoryBucket, prefix: string, count: number, partBytes = 1500): Promise<{ sources: SourceObject[]; data: Buffer }> {
  const table = await localTable(count * partBytes + 7);
  const sources: SourceObject[] = [];
  for (let i = 0; i < count; i++) {
    const start = i * partBytes;
    const end = i === count - 1 ? table.data.length : start + partBytes;
    const name = `${prefix}part-${String(i).padStart(3, "0")}`;
    const put = await bucket.put(table.path, name, { crc32c: crcOf(table.data.subarray(start, end)) }, {}, { start, end });
    sources.push({ name, generation: put.generation! });
  }
  return { sources, data: table.data };
}

/** Every file in the bucket, sidecars and staging copies included. */
async function filesIn(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

/** A later mtime than the file has, so a rewrite is another generation even on a coarse clock. */
async function replaceLater(file: string, data: Buffer | string): Promise<void> {
  const before = (await stat(file)).mtimeMs;
  do await writeFile(file, data);
  while ((await stat(file)).mtimeMs === before);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "local-bucket-compose-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("LocalDirectoryBucket.compose", () => {
  it("composes two parts into their concatenation with a crc32c computed from the bytes, componentCount 2 and the metadata from the first read", async () => {
    const { bucket, root } = bucketAt();
    const { sources, data } = await stageParts(bucket, "two/", 2, 3000);
    const metadata = { pair: "eurusd", rows: "177748" };
    const info = await bucket.compose(sources, "two/training.parquet.tmp", {
      ifGenerationMatch: "0",
      metadata,
      expected: { bytes: data.length, crc32c: crcOf(data) },
    });

    expect(info).toEqual({
      name: "two/training.parquet.tmp",
      bytes: data.length,
      crc32c: crcOf(data),
      generation: expect.any(String),
      metadata,
      componentCount: 2,
    });
    expect((await readFile(path.join(root, "two/training.parquet.tmp"))).equals(data)).toBe(true);
    expect(await bucket.stat("two/training.parquet.tmp")).toEqual(info);
    expect(await bucket.list("two/")).toEqual(["two/part-000", "two/part-001", "two/training.parquet.tmp"]);
    expect(bucket.maxComposeSources).toBe(Number.POSITIVE_INFINITY);
  });

  it("composes 32 parts, and a composite of composites (a tree of two levels) counts every component", async () => {
    const { bucket, root } = bucketAt({ maxComposeSources: 32 });
    const first = await stageParts(bucket, "tree/a/", 32, 700);
    const second = await stageParts(bucket, "tree/b/", 2, 900);
    const a = await bucket.compose(first.sources, "tree/a.tmp", { ifGenerationMatch: "0" });
    const b = await bucket.compose(second.sources, "tree/b.tmp", { ifGenerationMatch: "0" });
    expect([a.componentCount, b.componentCount, a.crc32c]).toEqual([32, 2, crcOf(first.data)]);
    const whole = Buffer.concat([first.data, second.data]);
    const top = await bucket.compose(
      [
        { name: "tree/a.tmp", generation: a.generation! },
        { name: "tree/b.tmp", generation: b.generation! },
      ],
      "tree/training.parquet",
      { ifGenerationMatch: "0", expected: { bytes: whole.length, crc32c: crcOf(whole) } },
    );
    expect(top).toMatchObject({ bytes: whole.length, crc32c: crcOf(whole), componentCount: 34 });
    expect((await readFile(path.join(root, "tree/training.parquet"))).equals(whole)).toBe(true);
  });

  it("refuses 33 sources when maxComposeSources is 32, and takes them in one concatenation by default", async () => {
    const { bucket: capped, root } = bucketAt({ maxComposeSources: 32 });
    const { sources, data } = await stageParts(capped, "many/", 33, 100);
    const err = await rejection(capped.compose(sources, "many/training.parquet", { ifGenerationMatch: "0" }));
    expect(err.reason).toBe("too-many-compose-sources");
    expect(err.message).toContain("from 33 sources: at most 32 per compose");
    expect(await capped.stat("many/training.parquet")).toBeUndefined();
    const unlimited = new LocalDirectoryBucket(root);
    expect(await unlimited.compose(sources, "many/training.parquet", { ifGenerationMatch: "0" })).toMatchObject({
      bytes: data.length,
      crc32c: crcOf(data),
      componentCount: 33,
    });
    expect((await rejection(unlimited.compose([], "many/none"))).reason).toBe("compose-no-sources");
  });

  it("fails, naming the part, when a part was replaced after its generation was read, and leaves the destination as it was", async () => {
    const { bucket, root } = bucketAt();
    const { sources } = await stageParts(bucket, "stale/", 3);
    await writeFile(path.join(root, "stale/training.parquet"), "the earlier training file");
    const earlier = (await bucket.stat("stale/training.parquet"))!;
    await replaceLater(path.join(root, "stale/part-001"), "another writer's part");
    const before = await filesIn(root);
    const err = await rejection(bucket.compose(sources, "stale/training.parquet", { ifGenerationMatch: earlier.generation }));
    expect(err.reason).toBe("source-changed");
    expect(err.message).toContain(`source ${path.join(root, "stale/part-001")} is no longer generation ${sources[1]!.generation}`);
    expect(await readFile(path.join(root, "stale/training.parquet"), "utf8")).toBe("the earlier training file");
    expect((await bucket.stat("stale/training.parquet"))!.generation).toBe(earlier.generation);
    expect(await filesIn(root)).toEqual(before);
  });

  it("refuses to compose over an existing object with ifGenerationMatch 0, and over a newer one with a stale generation", async () => {
    const { bucket, root } = bucketAt();
    const { sources } = await stageParts(bucket, "pre/", 2);
    await writeFile(path.join(root, "pre/training.parquet"), "v1");
    const v1 = (await bucket.stat("pre/training.parquet"))!;
    const exists = await rejection(bucket.compose(sources, "pre/training.parquet", { ifGenerationMatch: "0" }));
    expect(exists.reason).toBe("precondition-failed");
    expect(isPreconditionFailure(exists)).toBe(true);
    await replaceLater(path.join(root, "pre/training.parquet"), "v2");
    const stale = await rejection(bucket.compose(sources, "pre/training.parquet", { ifGenerationMatch: v1.generation }));
    expect(stale.describe()).toMatch(/another writer changed it meanwhile.*only one execution writes/);
    expect(await readFile(path.join(root, "pre/training.parquet"), "utf8")).toBe("v2");
  });

  it("throws a retryable checksum mismatch when the result differs from the expected size and crc32c, and leaves nothing", async () => {
    const { bucket, root } = bucketAt();
    const { sources, data } = await stageParts(bucket, "bad/", 2);
    const before = await filesIn(root);
    const err = await rejection(
      bucket.compose(sources, "bad/training.parquet.tmp", { ifGenerationMatch: "0", expected: { bytes: data.length, crc32c: crcOf(Buffer.from("not it")) } }),
    );
    expect(err.reason).toBe("checksum-mismatch");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`gave ${data.length} bytes with crc32c ${crcOf(data)}`);
    expect(await filesIn(root)).toEqual(before);
  });

  it("catches a byte flipped on the way (FAULT_CORRUPT_UPLOADS) with the expected crc32c", async () => {
    const { bucket: honest, root } = bucketAt();
    const { sources, data } = await stageParts(honest, "corrupt/", 3);
    const corrupting = new LocalDirectoryBucket(root, { corruptCopies: true });
    const before = await filesIn(root);
    const err = await rejection(corrupting.compose(sources, "corrupt/out", { expected: { bytes: data.length, crc32c: crcOf(data) } }));
    expect(err.reason).toBe("checksum-mismatch");
    expect(await filesIn(root)).toEqual(before);
  });

  it("commits nothing once interrupted (SIGTERM), and leaves no staging copy", async () => {
    const { bucket: honest, root } = bucketAt();
    const { sources } = await stageParts(honest, "term/", 2);
    const controller = new AbortController();
    controller.abort(new JobError("interrupted by SIGTERM", { reason: "interrupted" }));
    const interrupted = new LocalDirectoryBucket(root, { signal: controller.signal });
    const before = await filesIn(root);
    await expect(interrupted.compose(sources, "term/out", { ifGenerationMatch: "0" })).rejects.toMatchObject({ reason: "interrupted" });
    await expect(interrupted.move(sources[0]!, "term/moved")).rejects.toMatchObject({ reason: "interrupted" });
    expect(await filesIn(root)).toEqual(before);
  });
});

describe("LocalDirectoryBucket.move", () => {
  it("publishes the composite under its final name with metadata and a generation precondition by renaming it (no copy), and removes it", async () => {
    const { bucket, root } = bucketAt();
    const { sources, data } = await stageParts(bucket, "move/", 2);
    const tmp = await bucket.compose(sources, "move/training.parquet.tmp", { ifGenerationMatch: "0", metadata: { stage: "assembled" } });
    await writeFile(path.join(root, "move/training.parquet"), "yesterday's file");
    const earlier = (await bucket.stat("move/training.parquet"))!;
    const inode = (await stat(path.join(root, "move/training.parquet.tmp"))).ino;
    const metadata = { pair: "eurusd", rows: "10" };
    const info = await bucket.move({ name: tmp.name, generation: tmp.generation! }, "move/training.parquet", {
      ifGenerationMatch: earlier.generation,
      metadata,
    });

    expect(info).toEqual({
      name: "move/training.parquet",
      bytes: data.length,
      crc32c: crcOf(data),
      generation: expect.any(String),
      metadata,
      componentCount: 2,
    });
    expect(await bucket.stat("move/training.parquet")).toEqual(info);
    expect((await stat(path.join(root, "move/training.parquet"))).ino).toBe(inode);
    expect((await readFile(path.join(root, "move/training.parquet"))).equals(data)).toBe(true);
    expect(await bucket.stat("move/training.parquet.tmp")).toBeUndefined();
    expect(await filesIn(root)).toEqual([".bqx-meta/move/training.parquet.json", "move/part-000", "move/part-001", "move/training.parquet"]);
  });

  it("keeps the source's metadata when given none, its sidecar renamed along", async () => {
    const { bucket, root } = bucketAt();
    const table = await localTable(5000);
    const put = await bucket.put(table.path, "keep/part", { crc32c: crcOf(table.data) }, { stage: "aligned" });
    const info = await bucket.move({ name: "keep/part", generation: put.generation! }, "keep/final", { ifGenerationMatch: "0" });
    expect(info).toMatchObject({ bytes: 5000, crc32c: crcOf(table.data), metadata: { stage: "aligned" } });
    expect(await filesIn(root)).toEqual([".bqx-meta/keep/final.json", "keep/final"]);
  });

  it("refuses the move when the destination changed meanwhile; the earlier object keeps its bytes and the source stays", async () => {
    const { bucket, root } = bucketAt();
    const table = await localTable(4000);
    const put = await bucket.put(table.path, "race/training.parquet.tmp", { crc32c: crcOf(table.data) });
    await writeFile(path.join(root, "race/training.parquet"), "version the job saw");
    const seen = (await bucket.stat("race/training.parquet"))!;
    await replaceLater(path.join(root, "race/training.parquet"), "another execution's version");
    const err = await rejection(
      bucket.move({ name: "race/training.parquet.tmp", generation: put.generation! }, "race/training.parquet", { ifGenerationMatch: seen.generation }),
    );
    expect(err.reason).toBe("precondition-failed");
    expect(await readFile(path.join(root, "race/training.parquet"), "utf8")).toBe("another execution's version");
    expect((await bucket.stat("race/training.parquet.tmp"))?.generation).toBe(put.generation);
  });

  it("refuses to move a source that was replaced after its generation was read", async () => {
    const { bucket, root } = bucketAt();
    await mkdir(root, { recursive: true });
    await writeFile(path.join(root, "part"), "first");
    const first = (await bucket.stat("part"))!;
    await replaceLater(path.join(root, "part"), "second");
    const err = await rejection(bucket.move({ name: "part", generation: first.generation! }, "final"));
    expect(err.reason).toBe("source-changed");
    expect(await bucket.stat("final")).toBeUndefined();
  });
});

describe("LocalDirectoryBucket.put with a byte range", () => {
  it("stores exactly bytes [start, end) of the local file, verified by crc32c", async () => {
    const { bucket, root } = bucketAt();
    const table = await localTable(3 * 1024 * 1024);
    const part = table.data.subarray(123_457, 2 * 1024 * 1024 + 99);
    const put = await bucket.put(table.path, "ranged/part", { crc32c: crcOf(part) }, { table: "agg_eurusd" }, { start: 123_457, end: 2 * 1024 * 1024 + 99 });
    expect(put).toMatchObject({ bytes: part.length, checksums: { crc32c: crcOf(part) } });
    expect((await readFile(path.join(root, "ranged/part"))).equals(part)).toBe(true);
    // Without a sha256 only crc32c is verified and no sha256 is recorded.
    expect((await bucket.stat("ranged/part"))?.metadata).toEqual({ table: "agg_eurusd" });
  });

  it("rejects a range whose bytes do not match the expected crc32c, and one past the end of the file, leaving nothing", async () => {
    const { bucket, root } = bucketAt();
    await bucket.checkWritable();
    const table = await localTable(100_000);
    const wrong = await rejection(bucket.put(table.path, "ranged/bad", { crc32c: crcOf(table.data.subarray(0, 50_000)) }, {}, { start: 1, end: 50_001 }));
    expect(wrong.reason).toBe("checksum-mismatch");
    expect(wrong.message).toContain("bytes [1, 50001) of");
    const past = await rejection(bucket.put(table.path, "ranged/bad", { crc32c: crcOf(table.data) }, {}, { start: 50_000, end: 100_001 }));
    expect(past.reason).toBe("range-out-of-bounds");
    expect(await filesIn(root)).toEqual([]);
  });
});

describe("FAULT_RATE on compose and move", () => {
  it("a compose or move that fails leaves no staging copy and changes nothing", async () => {
    const { bucket: honest, root } = bucketAt();
    const { sources } = await stageParts(honest, "faults/", 3);
    const faulty = new FaultyBucket(new LocalDirectoryBucket(root), { rate: 0.5, seed: 5 });
    const before = await filesIn(root);
    const errors: JobError[] = [];
    for (let i = 0; i < 12; i++) {
      const err = await faulty.compose(sources, `faults/out-${i}`, { ifGenerationMatch: "0" }).then(
        () => undefined,
        (e: unknown) => e as JobError,
      );
      if (err) errors.push(err);
      else await honest.delete(`faults/out-${i}`);
    }
    expect(errors.length).toBeGreaterThan(0);
    for (const err of errors) expect(err.message).toMatch(/^injected transient fault \(FAULT_RATE=0\.5\) in compose of faults\/out-\d+$/);
    expect(await filesIn(root)).toEqual(before);

    const moveErr = await (async () => {
      for (let i = 0; i < 12; i++) {
        const err = await faulty.move(sources[0]!, `faults/moved-${i}`).then(
          () => undefined,
          (e: unknown) => e as JobError,
        );
        if (err) return err;
        await honest.move({ name: `faults/moved-${i}`, generation: sources[0]!.generation }, sources[0]!.name);
      }
      return undefined;
    })();
    expect(moveErr).toMatchObject({ reason: "injected-fault", retryable: true });
    expect(await filesIn(root)).toEqual(before);
  });

  it("RetryingBucket gets a tree of composes and a move through a fifth of the calls failing, with the same bytes", async () => {
    const warnings: string[] = [];
    const log = { warn: (_fields: object, message: string) => warnings.push(message) } as unknown as Pick<Logger, "warn">;
    const root = path.join(dir, `bucket-${++counter}`);
    const bucket = new RetryingBucket(new FaultyBucket(new LocalDirectoryBucket(root, { maxComposeSources: 4 }), { rate: 0.2, seed: 2026 }), {
      log,
      baseDelayMs: 1,
      maxDelayMs: 2,
    });
    expect(bucket.maxComposeSources).toBe(4);
    const table = await localTable(64 * 125);
    let level: SourceObject[] = [];
    for (let i = 0; i < 64; i++) {
      const range = { start: i * 125, end: (i + 1) * 125 };
      const put = await bucket.put(table.path, `retried/part-${i}`, { crc32c: crcOf(table.data.subarray(range.start, range.end)) }, {}, range);
      level.push({ name: `retried/part-${i}`, generation: put.generation! });
    }
    // The tree the pipeline builds: groups of maxComposeSources until one group is left.
    for (let depth = 1; level.length > bucket.maxComposeSources; depth++) {
      const next: SourceObject[] = [];
      for (let g = 0; g < level.length; g += bucket.maxComposeSources) {
        const info = await bucket.compose(level.slice(g, g + bucket.maxComposeSources), `retried/level-${depth}-${g}`, { ifGenerationMatch: "0" });
        next.push({ name: info.name, generation: info.generation! });
      }
      level = next;
    }
    const whole = await bucket.compose(level, "retried/training.parquet.tmp", {
      ifGenerationMatch: "0",
      expected: { bytes: table.data.length, crc32c: crcOf(table.data) },
    });
    const final = await bucket.move({ name: whole.name, generation: whole.generation! }, "retried/training.parquet", {
      ifGenerationMatch: "0",
      metadata: { pair: "eurusd" },
    });
    expect(final).toMatchObject({ bytes: table.data.length, crc32c: crcOf(table.data), componentCount: 64, metadata: { pair: "eurusd" } });
    expect((await readFile(path.join(root, "retried/training.parquet"))).equals(table.data)).toBe(true);
    expect(warnings.some((w) => w.startsWith("retrying compose "))).toBe(true);
    expect((await filesIn(root)).filter((f) => f.includes(".uploading-"))).toEqual([]);
  });
});

describe("sweep: what writers that died mid-write left behind", () => {
  it("removes temporary copies of dead writers (and of an earlier container's same pid) under the prefix, never a live writer's or this process's own", async () => {
    const { bucket, root } = bucketAt();
    const table = await localTable(300);
    await bucket.put(table.path, "_staging/eurusd/parts/a.chunks", { crc32c: crcOf(table.data) }, { fingerprint: "a" });
    // A process that has exited: its pid is free.
    const { spawnSync } = await import("node:child_process");
    const dead = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
    const leftovers = [
      `_staging/eurusd/parts/b.chunks.uploading-${dead}-0a1b2c3d`,
      `.bqx-meta/_staging/eurusd/parts/b.chunks.json.uploading-${dead}-0a1b2c3d`,
      `_staging/eurusd/assembly/x/training.uploading-${process.pid}-deadbeef`,
    ];
    // A live writer on this host (the test runner's parent) and another prefix keep theirs.
    const kept = [`_staging/eurusd/parts/c.chunks.uploading-${process.ppid}-01234567`, `_staging/gbpusd/parts/d.chunks.uploading-${dead}-89abcdef`];
    for (const name of [...leftovers, ...kept]) {
      await mkdir(path.dirname(path.join(root, name)), { recursive: true });
      await writeFile(path.join(root, name), "partial");
    }
    expect(await bucket.list("_staging/")).toEqual(["_staging/eurusd/parts/a.chunks"]);

    expect(await bucket.sweep("_staging/eurusd/")).toBe(leftovers.length);
    const files = await filesIn(root);
    for (const name of leftovers) expect(files).not.toContain(name);
    for (const name of kept) expect(files).toContain(name);
    expect(files).toContain("_staging/eurusd/parts/a.chunks");
    // A directory emptied by the sweep goes, as after a delete.
    expect(files.some((f) => f.startsWith("_staging/eurusd/assembly/"))).toBe(false);
  });
});

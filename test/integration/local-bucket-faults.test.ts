// FAULT_RATE around the local bucket (src/faults.ts), and the retries around that: injected faults
// are retryable JobErrors saying what they are, drawn the same way every run for a seed; a put that
// fails leaves neither a staging copy nor a changed object; the retrying wrapper gets through them.
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalDirectoryBucket } from "../../src/bucket/local.ts";
import { FaultyBucket } from "../../src/faults.ts";
import type { Bucket } from "../../src/bucket/port.ts";
import { RetryingBucket } from "../../src/bucket/retrying.ts";
import { fileChecksums } from "../../src/checksum.ts";
import { JobError } from "../../src/errors.ts";
import type { Logger } from "../../src/log.ts";

let dir: string;
let source: string;

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "local-bucket-faults-"));
  source = path.join(dir, "source.bin");
  await writeFile(source, Buffer.alloc(64 * 1024, 7));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** Every file in the bucket, sidecars and staging copies included. */
async function filesIn(root: string): Promise<string[]> {
  return (await readdir(root, { recursive: true, withFileTypes: true }))
    .filter((e) => e.isFile())
    .map((e) => path.relative(root, path.join(e.parentPath, e.name)))
    .sort();
}

/** Puts `count` objects, returning which of them failed (by index). */
async function failedPuts(bucket: Bucket, count: number): Promise<number[]> {
  const sums = await fileChecksums(source);
  const failed: number[] = [];
  for (let i = 0; i < count; i++) {
    await bucket.put(source, `obj-${i}.bin`, sums, { n: String(i) }).catch(() => failed.push(i));
  }
  return failed;
}

describe("FAULT_RATE on the local bucket", () => {
  it("fails the same calls for the same seed, and other calls for another seed", async () => {
    const a = await failedPuts(new FaultyBucket(new LocalDirectoryBucket(path.join(dir, "seed-a1")), { rate: 0.5, seed: 7 }), 20);
    const b = await failedPuts(new FaultyBucket(new LocalDirectoryBucket(path.join(dir, "seed-a2")), { rate: 0.5, seed: 7 }), 20);
    const c = await failedPuts(new FaultyBucket(new LocalDirectoryBucket(path.join(dir, "seed-b")), { rate: 0.5, seed: 8 }), 20);
    expect(a.length).toBeGreaterThan(0);
    expect(b).toEqual(a);
    expect(c).not.toEqual(a);
  });

  it("a put that fails keeps the earlier object and its metadata, and leaves no staging copy", async () => {
    const root = path.join(dir, "keep");
    const honest = new LocalDirectoryBucket(root);
    const earlier = path.join(dir, "earlier.bin");
    await writeFile(earlier, "the previous good object");
    await honest.put(earlier, "training.bin", await fileChecksums(earlier), { run: "earlier" });
    const before = await filesIn(root);
    const beforeBytes = await readFile(path.join(root, "training.bin"));
    const beforeInfo = await honest.stat("training.bin");

    const faulty = new FaultyBucket(new LocalDirectoryBucket(root), { rate: 0.5, seed: 3 });
    let error: unknown;
    for (let i = 0; i < 20 && error === undefined; i++) {
      error = await faulty.put(source, "training.bin", await fileChecksums(source), { run: "later" }).then(
        () => undefined,
        (err: unknown) => err,
      );
      // A put that went through is undone, so the next try starts from the earlier object again.
      if (error === undefined) await honest.put(earlier, "training.bin", await fileChecksums(earlier), { run: "earlier" });
    }
    expect(error).toBeInstanceOf(JobError);
    expect((error as JobError).retryable).toBe(true);
    expect((error as JobError).message).toMatch(/^injected transient fault \(FAULT_RATE=0\.5\) in put of training\.bin$/);
    expect(await readFile(path.join(root, "training.bin"))).toEqual(beforeBytes);
    expect((await honest.stat("training.bin"))?.metadata).toEqual(beforeInfo?.metadata);
    expect(await filesIn(root)).toEqual(before);
  });

  it("an injected fault in the write probe stays a retryable fault, not an unwritable location", async () => {
    const bucket = new FaultyBucket(new LocalDirectoryBucket(path.join(dir, "probe")), { rate: 0.5, seed: 1 });
    const errors: unknown[] = [];
    for (let i = 0; i < 20; i++) await bucket.checkWritable().catch((err: unknown) => errors.push(err));
    expect(errors.length).toBeGreaterThan(0);
    for (const err of errors) expect(err).toMatchObject({ reason: "injected-fault", retryable: true });
    expect(await filesIn(path.join(dir, "probe"))).toEqual([]);
  });
});

describe("RetryingBucket", () => {
  it("gets every call through a fifth of them failing, logging each retry, and the objects are whole", async () => {
    const warnings: string[] = [];
    const log = { warn: (_fields: object, message: string) => warnings.push(message) } as unknown as Pick<Logger, "warn">;
    const root = path.join(dir, "retried");
    const bucket = new RetryingBucket(new FaultyBucket(new LocalDirectoryBucket(root), { rate: 0.2, seed: 2026 }), { log, baseDelayMs: 1, maxDelayMs: 2 });
    const sums = await fileChecksums(source);
    await bucket.checkWritable();
    for (let i = 0; i < 30; i++) await bucket.put(source, `obj-${i}.bin`, sums);
    for (let i = 0; i < 30; i++) expect((await bucket.stat(`obj-${i}.bin`))?.crc32c).toBe(sums.crc32c);
    expect(await bucket.list("obj-")).toHaveLength(30);
    for (let i = 0; i < 30; i++) await bucket.delete(`obj-${i}.bin`);
    expect(await filesIn(root)).toEqual([]);
    expect(warnings.length).toBeGreaterThan(5);
    for (const w of warnings)
      expect(w).toMatch(/^retrying (checkWritable|put|stat|list|delete) \S+: injected transient fault \(FAULT_RATE=0\.2\) in \w+ of \S+$/);
  });

  it("does not retry an error that is not retryable", async () => {
    const warnings: string[] = [];
    const log = { warn: (_fields: object, message: string) => warnings.push(message) } as unknown as Pick<Logger, "warn">;
    const bucket = new RetryingBucket(new LocalDirectoryBucket(path.join(dir, "final")), { log, baseDelayMs: 1, maxDelayMs: 2 });
    await expect(bucket.get("missing.bin", path.join(dir, "missing.bin"))).rejects.toMatchObject({ reason: "object-not-found" });
    expect(warnings).toEqual([]);
  });
});

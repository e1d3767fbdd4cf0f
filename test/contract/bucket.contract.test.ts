// The bucket port's contract, in Malloy's manner (one spec over every backend in a runtime list):
// the local directory bucket, and GcsBucket driven through the real @google-cloud/storage client
// against the Cloud Storage JSON API stand-in (standins/gcs.ts). Only what both
// adapters do is here; where they differ it is said, and each adapter's own behaviour (resumable
// chunks, sidecars, retries, faults) is tested in test/integration.
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GcsBucket } from "../../src/bucket/gcs.ts";
import { LocalDirectoryBucket } from "../../src/bucket/local.ts";
import { isPreconditionFailure, type Bucket, type SourceObject } from "../../src/bucket/port.ts";
import { crc32cBase64, fileChecksums } from "../../src/checksum.ts";
import { startGcsStandIn } from "../../standins/gcs.ts";
import { rejection } from "../support/rejection.ts";

const GCS_BUCKET = "bqx-contract";

interface BucketRuntime {
  name: string;
  /** A bucket over an empty location, and what stops it. */
  open(dir: string): Promise<{ bucket: Bucket; close(): Promise<void> }>;
}

const runtimes: BucketRuntime[] = [
  {
    name: "local directory",
    async open(dir) {
      return { bucket: new LocalDirectoryBucket(path.join(dir, "bucket")), close: async () => {} };
    },
  },
  {
    name: "gcs (stand-in)",
    async open() {
      const standin = await startGcsStandIn({ buckets: [GCS_BUCKET] });
      // The library's backoff never goes below 1 s; ours stays short (nothing here fails on purpose).
      const bucket = new GcsBucket(`gs://${GCS_BUCKET}/runs/eurusd`, {
        apiEndpoint: standin.endpoint,
        retry: { maxRequestDelayMs: 1000, baseDelayMs: 5, maxDelayMs: 20 },
      });
      return { bucket, close: () => standin.close() };
    },
  },
];

const crcOf = (data: Buffer): string => crc32cBase64(crc32c(data));

describe.each(runtimes)("the bucket port on $name", (runtime) => {
  let dir: string;
  let bucket: Bucket;
  let opened: Awaited<ReturnType<BucketRuntime["open"]>> | undefined;
  let files = 0;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "bucket-contract-"));
    opened = await runtime.open(dir);
    bucket = opened.bucket;
  });

  afterAll(async () => {
    await opened?.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A local file of random bytes. */
  async function localFile(bytes: number): Promise<{ path: string; data: Buffer }> {
    const data = randomBytes(bytes);
    const file = path.join(dir, `local-${++files}.bin`);
    await writeFile(file, data);
    return { path: file, data };
  }

  /** Puts `data` as `name`, pinned for compose or move. */
  async function stage(name: string, data: Buffer, metadata: Record<string, string> = {}): Promise<SourceObject> {
    const file = path.join(dir, `local-${++files}.bin`);
    await writeFile(file, data);
    const put = await bucket.put(file, name, { crc32c: crcOf(data) }, metadata);
    expect(put.generation).toEqual(expect.any(String));
    return { name, generation: put.generation! };
  }

  it("stores a put verified by CRC32C and SHA-256: stat, get and readRange give back the same bytes and checksums", async () => {
    const { path: file, data } = await localFile(70_000);
    const sums = await fileChecksums(file);
    const put = await bucket.put(file, "put/object.bin", sums);
    expect(put).toMatchObject({ bytes: data.length, checksums: { crc32c: sums.crc32c, sha256: sums.sha256 } });
    expect(put.uri.endsWith("put/object.bin")).toBe(true);

    const info = await bucket.stat("put/object.bin");
    expect(info).toMatchObject({ name: "put/object.bin", bytes: data.length, crc32c: crcOf(data), generation: put.generation });
    const target = path.join(dir, "downloads", "object.bin");
    const got = await bucket.get("put/object.bin", target);
    expect(got).toMatchObject({ path: target, bytes: data.length, checksums: { crc32c: crcOf(data) } });
    expect((await readFile(target)).equals(data)).toBe(true);
    expect((await bucket.readRange("put/object.bin", 1000, 1010)).equals(data.subarray(1000, 1010))).toBe(true);
    expect((await bucket.readRange("put/object.bin", data.length - 8, data.length)).equals(data.subarray(-8))).toBe(true);
    expect((await bucket.readRange("put/object.bin", 5, 5)).length).toBe(0);
  });

  it("refuses a put whose bytes do not have the expected CRC32C, as a retryable checksum mismatch, and leaves no object", async () => {
    const { path: file, data } = await localFile(4000);
    const wrong = crcOf(Buffer.concat([data, Buffer.from([1])]));
    const err = await rejection(bucket.put(file, "wrong/object.bin", { crc32c: wrong }));
    expect(err.reason).toBe("checksum-mismatch");
    expect(err.retryable).toBe(true);
    expect(await bucket.stat("wrong/object.bin")).toBeUndefined();
    expect(await bucket.list("wrong/")).toEqual([]);
  });

  it("lists the objects under a prefix, sorted, by the names they were put under", async () => {
    for (const name of ["list/c.bin", "list/a.bin", "list/sub/b.bin", "listing-elsewhere.bin", "other/list/x.bin"]) await stage(name, Buffer.from(name));
    expect(await bucket.list("list/")).toEqual(["list/a.bin", "list/c.bin", "list/sub/b.bin"]);
    expect(await bucket.list("list")).toEqual(["list/a.bin", "list/c.bin", "list/sub/b.bin", "listing-elsewhere.bin"]);
    expect(await bucket.list("nothing-here/")).toEqual([]);
  });

  it("deletes an object, and deleting it again or one that never existed is not an error", async () => {
    await stage("delete/object.bin", Buffer.from("bytes"));
    await bucket.delete("delete/object.bin");
    expect(await bucket.stat("delete/object.bin")).toBeUndefined();
    await bucket.delete("delete/object.bin");
    await bucket.delete("delete/never.bin");
    expect(await bucket.list("delete/")).toEqual([]);
  });

  it("composes N sources into their concatenation, with componentCount N, the combined CRC32C and the given metadata", async () => {
    const parts = [randomBytes(3000), randomBytes(1), randomBytes(12_345), randomBytes(700)];
    const sources: SourceObject[] = [];
    for (const [i, part] of parts.entries()) sources.push(await stage(`compose/part-${i}`, part));
    const whole = Buffer.concat(parts);
    const metadata = { pair: "eurusd", rows: "177748" };
    const info = await bucket.compose(sources, "compose/whole.bin", {
      ifGenerationMatch: "0",
      metadata,
      expected: { bytes: whole.length, crc32c: crcOf(whole) },
    });
    expect(info).toEqual({
      name: "compose/whole.bin",
      bytes: whole.length,
      crc32c: crcOf(whole),
      generation: expect.any(String),
      metadata,
      componentCount: parts.length,
    });
    expect(await bucket.stat("compose/whole.bin")).toEqual(info);
    expect((await bucket.readRange("compose/whole.bin", 0, whole.length)).equals(whole)).toBe(true);
    // The sources stay: compose copies, it does not consume.
    expect(await bucket.list("compose/part-")).toEqual(parts.map((_, i) => `compose/part-${i}`));
  });

  it("refuses a compose or a move with ifGenerationMatch 0 onto an existing object as a precondition failure, changing nothing", async () => {
    const existing = Buffer.from("yesterday's file");
    const earlier = await stage("race/final.bin", existing);
    const source = await stage("race/part", randomBytes(2000));

    const composed = await rejection(bucket.compose([source], "race/final.bin", { ifGenerationMatch: "0" }));
    expect(isPreconditionFailure(composed)).toBe(true);
    const moved = await rejection(bucket.move(source, "race/final.bin", { ifGenerationMatch: "0" }));
    expect(isPreconditionFailure(moved)).toBe(true);

    expect(await bucket.stat("race/final.bin")).toMatchObject({ bytes: existing.length, crc32c: crcOf(existing), generation: earlier.generation });
    expect((await bucket.readRange("race/final.bin", 0, existing.length)).equals(existing)).toBe(true);
    expect(await bucket.list("race/")).toEqual(["race/final.bin", "race/part"]);
  });

  it("moves an object: the destination has its bytes, CRC32C and metadata, and the source is gone", async () => {
    // (Cloud Storage moves by a server-side compose, so its destination is a composite of one;
    // the local directory renames, so its stays plain: componentCount is not part of the contract.)
    const data = randomBytes(5000);
    const source = await stage("move/part", data, { stage: "aligned" });
    const info = await bucket.move(source, "move/final.bin", { ifGenerationMatch: "0" });
    expect(info).toMatchObject({ name: "move/final.bin", bytes: data.length, crc32c: crcOf(data), metadata: { stage: "aligned" } });
    expect(await bucket.stat("move/part")).toBeUndefined();
    expect((await bucket.readRange("move/final.bin", 0, data.length)).equals(data)).toBe(true);
    expect(await bucket.list("move/")).toEqual(["move/final.bin"]);

    const renamed = await bucket.move({ name: "move/final.bin", generation: info.generation! }, "move/published.bin", {
      ifGenerationMatch: "0",
      metadata: { pair: "eurusd" },
    });
    expect(renamed).toMatchObject({ bytes: data.length, crc32c: crcOf(data), metadata: { pair: "eurusd" } });
    expect(await bucket.list("move/")).toEqual(["move/published.bin"]);
  });

  it("round-trips custom metadata given to put, with the SHA-256 recorded beside it", async () => {
    const { path: file, data } = await localFile(900);
    const sums = await fileChecksums(file);
    const metadata = { pair: "eurusd", rows: "177748", note: "spaces, = signs & ünïcode" };
    await bucket.put(file, "meta/object.bin", sums, metadata);
    const info = await bucket.stat("meta/object.bin");
    expect(info?.metadata).toEqual({ ...metadata, sha256: sums.sha256 });
    expect(info).toMatchObject({ bytes: data.length, crc32c: sums.crc32c });
    expect(info?.componentCount).toBeUndefined();
  });
});

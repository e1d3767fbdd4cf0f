// GcsBucket through the real @google-cloud/storage client against the Cloud Storage JSON API
// stand-in (standins/gcs.ts), plus the local bucket's share of the same port.
import { randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GcsBucket, type GcsBucketOptions } from "../../src/bucket/gcs.ts";
import { LocalDirectoryBucket } from "../../src/bucket/local.ts";
import { fileChecksums } from "../../src/checksum.ts";
import { authClientForEndpoint, isLoopbackEndpoint, STANDIN_ACCESS_TOKEN } from "../../src/gcp/auth.ts";
import { RESUMABLE_BLOCK_BYTES, startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { rejection } from "../support/rejection.ts";

const BUCKET = "bqx-training-test";
const CHUNK = 2 * RESUMABLE_BLOCK_BYTES; // small chunks so a few MiB take several requests
const MiB = 1024 * 1024;

let standin: GcsStandIn;
let dir = "";

function gcs(uri = `gs://${BUCKET}/runs/eurusd`, extra: GcsBucketOptions = {}): GcsBucket {
  return new GcsBucket(uri, {
    apiEndpoint: standin.endpoint,
    chunkSizeBytes: CHUNK,
    // The library's backoff never goes below 1 s; keep ours short so the suite stays quick.
    retry: { maxRequestDelayMs: 1000, baseDelayMs: 5, maxDelayMs: 20 },
    ...extra,
  });
}

async function localFile(name: string, bytes: number): Promise<{ path: string; data: Buffer }> {
  const data = randomBytes(bytes);
  const file = path.join(dir, name);
  await writeFile(file, data);
  return { path: file, data };
}

/** Byte equality without vitest's element-by-element diff, which takes seconds per MiB. */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  const firstDifference = actual.findIndex((byte, i) => byte !== expected[i]);
  expect(actual.equals(expected) ? -1 : firstDifference).toBe(-1);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "gcs-bucket-"));
  standin = await startGcsStandIn({ buckets: [BUCKET, "bqx-denied", "bqx-no-delete", "bqx-unauthenticated"] });
});

afterAll(async () => {
  await standin?.close();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  standin.faults.reset();
  standin.requests.length = 0;
});

describe("GcsBucket against the Cloud Storage stand-in", () => {
  it("uploads a multi-MiB file in resumable chunks and the stored bytes, crc32c and metadata match", async () => {
    const { path: file, data } = await localFile("training.parquet", 3 * MiB + 4321);
    const sums = await fileChecksums(file);
    const bucket = gcs();
    const put = await bucket.put(file, "training_eurusd.parquet", sums, { pair: "eurusd", rows: "177748", columns: "17038", schemaHash: "abc123" });

    expect(put).toMatchObject({
      uri: `gs://${BUCKET}/runs/eurusd/training_eurusd.parquet`,
      bytes: data.length,
      checksums: { crc32c: sums.crc32c, sha256: sums.sha256 },
    });
    const stored = standin.getObject(BUCKET, "runs/eurusd/training_eurusd.parquet")!;
    expectSameBytes(await standin.readObject(BUCKET, stored.name), data);
    expect(stored.crc32c).toBe(sums.crc32c);
    expect(stored.contentType).toBe("application/vnd.apache.parquet");
    expect(stored.metadata).toEqual({ pair: "eurusd", rows: "177748", columns: "17038", schemaHash: "abc123", sha256: sums.sha256 });
    expect(await bucket.stat("training_eurusd.parquet")).toEqual({
      name: "training_eurusd.parquet",
      bytes: data.length,
      crc32c: sums.crc32c,
      generation: stored.generation,
      metadata: stored.metadata,
    });

    const start = standin.requests.filter((r) => r.kind === "upload-start");
    expect(start).toHaveLength(1);
    expect(start[0]!.query.ifGenerationMatch).toBe("0");
    const chunks = standin.requests.filter((r) => r.kind === "upload-chunk");
    expect(chunks.length).toBe(Math.ceil(data.length / CHUNK));
    expect(chunks.slice(0, -1).every((r) => r.status === 308)).toBe(true);
    expect(chunks.at(-1)!.status).toBe(200);
    expect(chunks[1]!.range).toBe(`bytes ${CHUNK}-${2 * CHUNK - 1}/${data.length}`);
    // JSON API calls carry the placeholder token; the session PUTs need none (the URI is the grant).
    expect(standin.requests.filter((r) => r.kind === "metadata").every((r) => r.auth === "standin-token")).toBe(true);
  });

  it("lands identical content through 20% injected 503s and some 429s, resuming one session", async () => {
    const { path: file, data } = await localFile("faulty.parquet", 4 * MiB + 17);
    const sums = await fileChecksums(file);
    standin.faults.configure({ failRate: 0.2, failStatus: 503, seed: 7 });
    standin.faults.failNext(1, 429, ["upload-chunk"]);
    await gcs().put(file, "faulty.parquet", sums);

    expectSameBytes(await standin.readObject(BUCKET, "runs/eurusd/faulty.parquet"), data);
    const injected = standin.requests.filter((r) => r.injected);
    expect(injected.length).toBeGreaterThanOrEqual(2);
    expect(injected.some((r) => r.status === 429)).toBe(true);
    // After a failed chunk the client asks where to resume (bytes */*) instead of starting over.
    expect(standin.requests.some((r) => r.kind === "upload-status" && r.status === 308)).toBe(true);
    const sessions = new Set(standin.requests.filter((r) => r.kind === "upload-chunk").map((r) => r.query.upload_id));
    expect(sessions.size).toBe(1);
  });

  it("resumes the same session, not byte 0, when the library's own upload retries run out", async () => {
    const { path: file, data } = await localFile("resume.parquet", 2 * MiB + 5);
    standin.faults.failNext(1, 503, ["upload-chunk"]);
    standin.faults.failNext(1, 503, ["upload-status"]);
    standin.faults.failNext(1, 503, ["upload-chunk"]);
    await gcs(undefined, { retry: { requestRetries: 1, maxRequestDelayMs: 1000, baseDelayMs: 5, maxDelayMs: 20 } }).put(
      file,
      "resume.parquet",
      await fileChecksums(file),
    );

    expectSameBytes(await standin.readObject(BUCKET, "runs/eurusd/resume.parquet"), data);
    expect(standin.requests.filter((r) => r.kind === "upload-start")).toHaveLength(1);
    const chunks = standin.requests.filter((r) => r.kind === "upload-chunk");
    expect(new Set(chunks.map((r) => r.query.upload_id)).size).toBe(1);
    expect(chunks.slice(1).every((r) => !r.range!.startsWith("bytes 0-"))).toBe(true);
    // The second whole-upload attempt: check the object, then ask the same session for its offset.
    const kinds = standin.requests.map((r) => `${r.kind} ${r.status}`);
    expect(kinds.slice(0, 6)).toEqual(["metadata 404", "upload-start 200", "upload-chunk 503", "upload-status 503", "metadata 404", "upload-status 308"]);
  });

  it("rejects a corrupted upload with a retryable checksum error and leaves no object", async () => {
    const { path: file } = await localFile("corrupt.parquet", MiB + 5);
    standin.faults.configure({ corruptUploads: Infinity });
    const err = await rejection(gcs().put(file, "corrupt.parquet", await fileChecksums(file)));
    expect(err.reason).toBe("checksum-mismatch");
    expect(err.retryable).toBe(true);
    expect(err.message).toMatch(/Provided CRC32C .* doesn't match calculated CRC32C/);
    expect(standin.getObject(BUCKET, "runs/eurusd/corrupt.parquet")).toBeUndefined();
    expect(await gcs().stat("corrupt.parquet")).toBeUndefined();
  });

  it("keeps the previous good object when its replacement arrives corrupted", async () => {
    const bucket = gcs();
    const good = await localFile("good.parquet", MiB);
    const first = await bucket.put(good.path, "keep.parquet", await fileChecksums(good.path));
    const next = await localFile("next.parquet", MiB + 99);
    standin.faults.configure({ corruptUploads: Infinity });
    expect((await rejection(bucket.put(next.path, "keep.parquet", await fileChecksums(next.path)))).reason).toBe("checksum-mismatch");
    expect(standin.getObject(BUCKET, "runs/eurusd/keep.parquet")!.generation).toBe(first.generation);
    expectSameBytes(await standin.readObject(BUCKET, "runs/eurusd/keep.parquet"), good.data);
  });

  it("uploads again in a fresh session when only one upload was corrupted on the way", async () => {
    const { path: file, data } = await localFile("once.parquet", MiB + 1);
    standin.faults.configure({ corruptUploads: 1 });
    await gcs().put(file, "once.parquet", await fileChecksums(file));
    expectSameBytes(await standin.readObject(BUCKET, "runs/eurusd/once.parquet"), data);
    expect(standin.requests.filter((r) => r.kind === "upload-start")).toHaveLength(2);
  });

  it("uploads over an existing object with its current generation as the precondition", async () => {
    const bucket = gcs();
    const a = await localFile("v1.json", 1000);
    const v1 = await bucket.put(a.path, "training_eurusd.manifest.json", await fileChecksums(a.path));
    const b = await localFile("v2.json", 2000);
    const v2 = await bucket.put(b.path, "training_eurusd.manifest.json", await fileChecksums(b.path));
    const starts = standin.requests.filter((r) => r.kind === "upload-start");
    expect(starts.map((r) => r.query.ifGenerationMatch)).toEqual(["0", v1.generation]);
    expect(v2.generation).not.toBe(v1.generation);
    expectSameBytes(await standin.readObject(BUCKET, "runs/eurusd/training_eurusd.manifest.json"), b.data);
    expect(standin.getObject(BUCKET, "runs/eurusd/training_eurusd.manifest.json")!.contentType).toBe("application/json");
  });

  it("fails with a precondition error, naming the other writer, when the object changes mid-upload", async () => {
    const { path: file } = await localFile("race.parquet", 2 * MiB);
    standin.faults.configure({ latencyMs: 60 });
    const upload = gcs().put(file, "race.parquet", await fileChecksums(file));
    while (!standin.requests.some((r) => r.kind === "upload-start" && r.status === 200)) await new Promise((r) => setTimeout(r, 10));
    const other = await standin.putObject(BUCKET, "runs/eurusd/race.parquet", Buffer.from("another writer"));
    const err = await rejection(upload);
    expect(err.reason).toBe("gcs-precondition-failed");
    expect(err.describe()).toMatch(/another writer changed the object.*only one execution writes/);
    expect(standin.getObject(BUCKET, "runs/eurusd/race.parquet")!.generation).toBe(other.generation);
  });

  it("passes checkWritable on a writable bucket and leaves no probe object behind", async () => {
    await gcs().checkWritable();
    expect([...standin.requests.map((r) => `${r.kind} ${r.status}`)]).toEqual(["upload-simple 200", "metadata 200", "list 200", "delete 204"]);
    expect(await gcs().list()).not.toContainEqual(expect.stringContaining("probe"));
  });

  it("fails checkWritable on a missing bucket, naming it and how to create it", async () => {
    const err = await rejection(gcs("gs://bqx-no-such-bucket/out").checkWritable());
    expect(err.reason).toBe("gcs-bucket-not-found");
    expect(err.describe()).toContain("bucket bqx-no-such-bucket does not exist");
    expect(err.fix).toContain("gcloud storage buckets create gs://bqx-no-such-bucket");
  });

  it("fails checkWritable on a bucket that denies access, naming the permission and the role", async () => {
    standin.faults.deny("bqx-denied");
    const err = await rejection(gcs("gs://bqx-denied").checkWritable());
    expect(err.reason).toBe("gcs-permission-denied");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("missing storage.objects.create");
    expect(err.fix).toContain("roles/storage.objectAdmin on gs://bqx-denied");
  });

  it("fails checkWritable when only deleting is denied (objectCreator + objectViewer)", async () => {
    standin.faults.deny("bqx-no-delete", ["storage.objects.delete"]);
    const err = await rejection(gcs("gs://bqx-no-delete").checkWritable());
    expect(err.message).toContain("missing storage.objects.delete");
    expect(err.fix).toContain("storage.objects.delete");
  });

  it("reports rejected credentials (401) as an authentication problem, not retryable", async () => {
    standin.faults.deny("bqx-unauthenticated", undefined, 401);
    const err = await rejection(gcs("gs://bqx-unauthenticated").stat("x"));
    expect(err.reason).toBe("gcs-unauthenticated");
    expect(err.retryable).toBe(false);
    expect(err.fix).toContain("service account");
  });

  it("reports an endpoint nothing listens on as a retryable unavailability", async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, "127.0.0.1", resolve));
    const { port } = closed.address() as AddressInfo;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    const err = await rejection(gcs(`gs://${BUCKET}`, { apiEndpoint: `http://127.0.0.1:${port}` }).checkWritable());
    expect(err.reason).toBe("gcs-unavailable");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain("ECONNREFUSED");
  });

  it("lists every object under the prefix across pages, relative to the prefix", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `checkpoints/bqx_ml_v3_features_v2.agg_eurusd_${String(i).padStart(2, "0")}.parquet`);
    for (const n of names) await standin.putObject(BUCKET, `listing/${n}`, Buffer.from(n));
    await standin.putObject(BUCKET, "listing-elsewhere/x.parquet", Buffer.from("x"));
    await standin.putObject(BUCKET, "listing/other/y.parquet", Buffer.from("y"));
    const bucket = gcs(`gs://${BUCKET}/listing`, { listPageSize: 5 });

    expect(await bucket.list("checkpoints/")).toEqual(names);
    const pages = standin.requests.filter((r) => r.kind === "list");
    expect(pages.map((r) => r.query.maxResults)).toEqual(["5", "5", "5"]);
    expect(pages[0]!.query.pageToken).toBeUndefined();
    expect(pages[2]!.query.pageToken).toBeDefined();
    expect(await bucket.list()).toEqual([...names, "other/y.parquet"]);
  });

  it("downloads with get, verifying crc32c, through a temporary name", async () => {
    const { path: file, data } = await localFile("down.parquet", 2 * MiB + 3);
    const bucket = gcs();
    const put = await bucket.put(file, "down.parquet", await fileChecksums(file));
    const target = path.join(dir, "downloads", "down.parquet");
    const got = await bucket.get("down.parquet", target);
    expect(got).toMatchObject({ path: target, bytes: data.length, checksums: put.checksums, generation: put.generation });
    expectSameBytes(await readFile(target), data);
    expect((await readdir(path.dirname(target))).sort()).toEqual(["down.parquet"]);
  });

  it("rejects a download whose bytes fail the crc32c check, leaving an earlier local file untouched", async () => {
    const { path: file } = await localFile("bad-down.parquet", MiB);
    const bucket = gcs();
    await bucket.put(file, "bad-down.parquet", await fileChecksums(file));
    const target = path.join(dir, "bad-downloads", "bad-down.parquet");
    await bucket.get("bad-down.parquet", path.join(dir, "bad-downloads", "other.parquet"));
    await writeFile(target, "the previous checkpoint");
    standin.requests.length = 0;
    standin.faults.configure({ corruptDownloads: Infinity });
    const err = await rejection(bucket.get("bad-down.parquet", target));
    expect(err.reason).toBe("checksum-mismatch");
    expect(err.message).toContain(`gs://${BUCKET}/runs/eurusd/bad-down.parquet`);
    expect((await readdir(path.dirname(target))).sort()).toEqual(["bad-down.parquet", "other.parquet"]);
    expect(await readFile(target, "utf8")).toBe("the previous checkpoint");
    expect(standin.requests.filter((r) => r.kind === "media")).toHaveLength(3); // every whole-download attempt
  });

  it("downloads again when the bytes arrived corrupted once", async () => {
    const { path: file, data } = await localFile("retry-down.parquet", MiB);
    const bucket = gcs();
    await bucket.put(file, "retry-down.parquet", await fileChecksums(file));
    const target = path.join(dir, "retry-down.local");
    standin.faults.configure({ corruptDownloads: 1 });
    await bucket.get("retry-down.parquet", target);
    expectSameBytes(await readFile(target), data);
    expect(standin.requests.filter((r) => r.kind === "media")).toHaveLength(2);
  });

  it("reads exact byte ranges, including a parquet-style footer at the end", async () => {
    const { path: file, data } = await localFile("ranges.parquet", MiB + 777);
    const bucket = gcs();
    await bucket.put(file, "ranges.parquet", await fileChecksums(file));
    expectSameBytes(await bucket.readRange("ranges.parquet", 0, 4), data.subarray(0, 4));
    expectSameBytes(await bucket.readRange("ranges.parquet", data.length - 8, data.length), data.subarray(-8));
    expectSameBytes(await bucket.readRange("ranges.parquet", 300_000, 700_001), data.subarray(300_000, 700_001));
    expectSameBytes(await bucket.readRange("ranges.parquet", 10, 10), Buffer.alloc(0));
    expect(standin.requests.filter((r) => r.kind === "media").map((r) => r.range)).toContain(`bytes=${data.length - 8}-${data.length - 1}`);
    expect((await rejection(bucket.readRange("ranges.parquet", data.length - 4, data.length + 4))).reason).toBe("range-out-of-bounds");
    expect((await rejection(bucket.readRange("ranges.parquet", data.length + 10, data.length + 20))).reason).toBe("range-out-of-bounds");
  });

  it("deletes objects, treats a missing object as deleted, and retries a DELETE the library does not", async () => {
    const bucket = gcs();
    await standin.putObject(BUCKET, "runs/eurusd/gone.parquet", Buffer.from("x"));
    standin.faults.failNext(1, 503, ["delete"]);
    await bucket.delete("gone.parquet");
    expect(standin.getObject(BUCKET, "runs/eurusd/gone.parquet")).toBeUndefined();
    await bucket.delete("gone.parquet");
    await bucket.delete("never-existed.parquet");
    expect(standin.requests.filter((r) => r.kind === "delete").map((r) => r.status)).toEqual([503, 204, 404, 404]);
  });
});

describe("authClientForEndpoint", () => {
  it("gives loopback http endpoints a placeholder-token client and everything else ADC", async () => {
    for (const endpoint of ["http://127.0.0.1:9050", "http://127.0.0.2:9050", "http://localhost:1", "http://[::1]:8080"]) {
      expect(isLoopbackEndpoint(endpoint)).toBe(true);
      const client = authClientForEndpoint(endpoint)!;
      expect((await client.getAccessToken()).token).toBe(STANDIN_ACCESS_TOKEN);
    }
    for (const endpoint of [
      undefined,
      "https://storage.googleapis.com",
      "https://127.0.0.1:9050",
      "http://10.1.2.3:9050",
      "http://localhost.example.com",
      "not a url",
    ]) {
      expect(authClientForEndpoint(endpoint)).toBeUndefined();
    }
  });
});

describe("the local bucket", () => {
  it("stores metadata with the object and reports it, with checksums, from stat", async () => {
    const bucket = new LocalDirectoryBucket(path.join(dir, "local-a"));
    const { path: file, data } = await localFile("l1.parquet", 70_000);
    const sums = await fileChecksums(file);
    const put = await bucket.put(file, "sub/training_eurusd.parquet", sums, { pair: "eurusd", rows: "10" });
    const info = await bucket.stat("sub/training_eurusd.parquet");
    expect(info).toEqual({
      name: "sub/training_eurusd.parquet",
      bytes: data.length,
      crc32c: sums.crc32c,
      generation: put.generation,
      metadata: { pair: "eurusd", rows: "10", sha256: sums.sha256 },
    });
    expect(await bucket.stat("missing.parquet")).toBeUndefined();
    expect(await bucket.list()).toEqual(["sub/training_eurusd.parquet"]);
    await bucket.delete("sub/training_eurusd.parquet");
    expect(await bucket.stat("sub/training_eurusd.parquet")).toBeUndefined();
    // An object store has no directories: the ones the last object kept alive go with it.
    expect(await readdir(path.join(dir, "local-a"))).toEqual([]);
  });

  it("describes a file written behind its back from the bytes themselves", async () => {
    const root = path.join(dir, "local-b");
    const bucket = new LocalDirectoryBucket(root);
    const { path: file } = await localFile("l2.parquet", 5_000);
    await bucket.put(file, "x.parquet", await fileChecksums(file), { pair: "gbpusd" });
    const replaced = randomBytes(6_000);
    await writeFile(path.join(root, "x.parquet"), replaced);
    const sums = await fileChecksums(path.join(root, "x.parquet"));
    expect(await bucket.stat("x.parquet")).toEqual({
      name: "x.parquet",
      bytes: 6_000,
      crc32c: sums.crc32c,
      generation: expect.any(String),
      metadata: { sha256: sums.sha256 },
    });
  });

  it("writes no sidecar for a put without metadata, so the directory holds only the objects", async () => {
    const root = path.join(dir, "local-d");
    const bucket = new LocalDirectoryBucket(root);
    const { path: file } = await localFile("l4.parquet", 3_000);
    const sums = await fileChecksums(file);
    await bucket.put(file, "z.parquet", sums, { pair: "usdjpy" });
    await bucket.put(file, "z.parquet", sums);
    await bucket.put(file, "training_usdjpy.parquet", sums);
    expect((await readdir(root)).filter((n) => n !== ".bqx-meta").sort()).toEqual(["training_usdjpy.parquet", "z.parquet"]);
    expect(await readdir(path.join(root, ".bqx-meta"))).toEqual([]);
    expect(await bucket.stat("z.parquet")).toMatchObject({ crc32c: sums.crc32c, metadata: { sha256: sums.sha256 } });
  });

  it("gets a verified copy through a temporary name and reads exact ranges", async () => {
    const root = path.join(dir, "local-c");
    const bucket = new LocalDirectoryBucket(root);
    const { path: file, data } = await localFile("l3.parquet", 40_000);
    await bucket.put(file, "y.parquet", await fileChecksums(file));
    const target = path.join(dir, "local-c-out", "y.parquet");
    const got = await bucket.get("y.parquet", target);
    expect(got.bytes).toBe(40_000);
    expectSameBytes(await readFile(target), data);
    expectSameBytes(await bucket.readRange("y.parquet", 39_992, 40_000), data.subarray(39_992));
    expect((await rejection(bucket.readRange("y.parquet", 39_992, 40_001))).reason).toBe("range-out-of-bounds");
    expect((await rejection(bucket.get("nope.parquet", target))).reason).toBe("object-not-found");
  });
});

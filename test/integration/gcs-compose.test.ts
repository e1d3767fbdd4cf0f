// Compose, move and ranged put on GcsBucket, through the real @google-cloud/storage client
// against the Cloud Storage stand-in (standins/gcs.ts). The stand-in's own compose
// rules are checked in gcs-standin-compose.test.ts.
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { crc32c } from "@node-rs/crc32";
import { Storage } from "@google-cloud/storage";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { GcsBucket, type GcsBucketOptions } from "../../src/bucket/gcs.ts";
import type { SourceObject } from "../../src/bucket/port.ts";
import { crc32cBase64 } from "../../src/checksum.ts";
import { authClientForEndpoint } from "../../src/gcp/auth.ts";
import { RESUMABLE_BLOCK_BYTES, startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { rejection } from "../support/rejection.ts";

const BUCKET = "bqx-compose-test";
const DENIED = "bqx-compose-denied";
const PREFIX = "runs/eurusd/";
const CHUNK = 2 * RESUMABLE_BLOCK_BYTES;

let standin: GcsStandIn;
let dir = "";

function gcs(extra: GcsBucketOptions = {}, bucket = BUCKET): GcsBucket {
  return new GcsBucket(`gs://${bucket}/${PREFIX.slice(0, -1)}`, {
    apiEndpoint: standin.endpoint,
    chunkSizeBytes: CHUNK,
    retry: { maxRequestDelayMs: 1000, baseDelayMs: 5, maxDelayMs: 20 },
    ...extra,
  });
}

/** The library itself, for what GcsBucket does not expose (the raw metadata GET, combine). */
function library(): Storage {
  return new Storage({
    apiEndpoint: standin.endpoint,
    authClient: authClientForEndpoint(standin.endpoint)!,
    useAuthWithCustomEndpoint: true,
    retryOptions: { autoRetry: false },
  });
}

const crcOf = (data: Buffer): string => crc32cBase64(crc32c(data));

/** A local "aligned table" and its bytes. */
async function localTable(name: string, bytes: number): Promise<{ path: string; data: Buffer }> {
  const data = randomBytes(bytes);
  const file = path.join(dir, name);
  await writeFile(file, data);
  return { path: file, data };
}

/** Stages `count` parts of one local file with ranged puts; returns them pinned, and the whole. */
async function stageParts(bucket: GcsBucket, prefix: string, count: number, partBytes = 1500): Promise<{ sources: SourceObject[]; data: Buffer }> {
  const table = await localTable(`${prefix.replaceAll("/", "_")}.parquet`, count * partBytes + 7);
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

function expectSameBytes(actual: Buffer, expected: Buffer): void {
  expect(actual.length).toBe(expected.length);
  expect(actual.equals(expected) ? -1 : actual.findIndex((byte, i) => byte !== expected[i])).toBe(-1);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "gcs-compose-"));
  standin = await startGcsStandIn({ buckets: [BUCKET, DENIED] });
});

afterAll(async () => {
  await standin?.close();
  await rm(dir, { recursive: true, force: true });
});

afterEach(() => {
  standin.faults.reset();
  standin.requests.length = 0;
});

describe("GcsBucket.compose against the Cloud Storage stand-in", () => {
  it("composes two parts into their concatenation with a crc32c computed from the bytes, no md5Hash, componentCount 2 and the metadata from the first read", async () => {
    const bucket = gcs();
    const { sources, data } = await stageParts(bucket, "two/", 2, 3000);
    standin.requests.length = 0;
    const metadata = { pair: "eurusd", rows: "177748", schema_sha256: "abc" };
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
    expectSameBytes(await standin.readObject(BUCKET, `${PREFIX}two/training.parquet.tmp`), data);
    const stored = standin.getObject(BUCKET, `${PREFIX}two/training.parquet.tmp`)!;
    expect(stored).toMatchObject({ crc32c: crcOf(data), componentCount: 2, storageClass: "STANDARD", metadata, contentType: "application/octet-stream" });
    expect(stored.md5Hash).toBeUndefined();
    // The metadata GET afterwards, through the library: no md5Hash, the metadata already there.
    const [md] = await library().bucket(BUCKET).file(`${PREFIX}two/training.parquet.tmp`).getMetadata();
    expect(md.md5Hash).toBeUndefined();
    expect(md).toMatchObject({ crc32c: crcOf(data), componentCount: 2, metadata, metageneration: "1" });
    // One compose request carried everything: no PATCH to add the metadata afterwards.
    const kinds = standin.requests.map((r) => `${r.method} ${r.kind} ${r.status}`);
    expect(kinds).toEqual(["POST compose 200", "GET metadata 200"]);
    const compose = standin.requests.find((r) => r.kind === "compose")!;
    expect(compose.path).toBe(`/storage/v1/b/${BUCKET}/o/${PREFIX}two/training.parquet.tmp/compose`);
    expect(compose.query.ifGenerationMatch).toBe("0");
  });

  it("composes 32 parts, and a composite of composites (a tree of two levels) counts every component", async () => {
    const bucket = gcs();
    const first = await stageParts(bucket, "tree/a/", 32, 700);
    const second = await stageParts(bucket, "tree/b/", 2, 900);
    const a = await bucket.compose(first.sources, "tree/a.tmp", { ifGenerationMatch: "0" });
    const b = await bucket.compose(second.sources, "tree/b.tmp", { ifGenerationMatch: "0" });
    expect([a.componentCount, b.componentCount]).toEqual([32, 2]);
    expect(a.crc32c).toBe(crcOf(first.data));

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
    expectSameBytes(await standin.readObject(BUCKET, `${PREFIX}tree/training.parquet`), whole);
    expect(bucket.maxComposeSources).toBe(32);
  });

  it("refuses 33 sources with Cloud Storage's 400, as too-many-compose-sources, and creates nothing", async () => {
    const bucket = gcs();
    const { sources } = await stageParts(bucket, "many/", 33, 100);
    standin.requests.length = 0;
    const err = await rejection(bucket.compose(sources, "many/training.parquet", { ifGenerationMatch: "0" }));
    expect(err.reason).toBe("too-many-compose-sources");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("at most 32 sources at once (got 33)");
    expect(err.fix).toContain("compose in a tree");
    expect(standin.requests.filter((r) => r.kind === "compose").map((r) => r.status)).toEqual([400]);
    expect(standin.getObject(BUCKET, `${PREFIX}many/training.parquet`)).toBeUndefined();
  });

  it("fails, naming the part, when a part was replaced after its generation was read, and leaves the destination as it was", async () => {
    const bucket = gcs();
    const { sources } = await stageParts(bucket, "stale/", 3);
    const earlier = await standin.putObject(BUCKET, `${PREFIX}stale/training.parquet`, Buffer.from("the earlier training file"));
    await standin.putObject(BUCKET, `${PREFIX}stale/part-001`, Buffer.from("another writer's part"));
    const err = await rejection(bucket.compose(sources, "stale/training.parquet", { ifGenerationMatch: earlier.generation }));
    expect(err.reason).toBe("source-changed");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain(`source gs://${BUCKET}/${PREFIX}stale/part-001 (generation ${sources[1]!.generation}) no longer exists`);
    expect(standin.requests.filter((r) => r.kind === "compose").map((r) => r.status)).toEqual([404]);
    expect(standin.getObject(BUCKET, `${PREFIX}stale/training.parquet`)!.generation).toBe(earlier.generation);
    expect((await standin.readObject(BUCKET, `${PREFIX}stale/training.parquet`)).toString()).toBe("the earlier training file");
  });

  it("refuses to compose over an existing object with ifGenerationMatch 0, and over a newer one with a stale generation", async () => {
    const bucket = gcs();
    const { sources } = await stageParts(bucket, "pre/", 2);
    const v1 = await standin.putObject(BUCKET, `${PREFIX}pre/training.parquet`, Buffer.from("v1"));
    const exists = await rejection(bucket.compose(sources, "pre/training.parquet", { ifGenerationMatch: "0" }));
    expect(exists.reason).toBe("gcs-precondition-failed");
    const v2 = await standin.putObject(BUCKET, `${PREFIX}pre/training.parquet`, Buffer.from("v2"));
    const stale = await rejection(bucket.compose(sources, "pre/training.parquet", { ifGenerationMatch: v1.generation }));
    expect(stale.reason).toBe("gcs-precondition-failed");
    expect(stale.describe()).toMatch(/another writer changed the object.*only one execution writes/);
    expect(standin.requests.filter((r) => r.kind === "compose").map((r) => `${r.status} ${r.query.ifGenerationMatch}`)).toEqual([
      `412 0`,
      `412 ${v1.generation}`,
    ]);
    expect(standin.getObject(BUCKET, `${PREFIX}pre/training.parquet`)!.generation).toBe(v2.generation);
  });

  it("deletes a result that differs from the expected size and crc32c, by its generation, and throws a retryable checksum mismatch", async () => {
    const bucket = gcs();
    const { sources, data } = await stageParts(bucket, "bad/", 2);
    standin.requests.length = 0;
    const err = await rejection(
      bucket.compose(sources, "bad/training.parquet.tmp", { ifGenerationMatch: "0", expected: { bytes: data.length, crc32c: crcOf(Buffer.from("not it")) } }),
    );
    expect(err.reason).toBe("checksum-mismatch");
    expect(err.retryable).toBe(true);
    expect(err.message).toContain(`gave ${data.length} bytes with crc32c ${crcOf(data)}`);
    expect(err.message).toContain("the result was deleted");
    expect(standin.getObject(BUCKET, `${PREFIX}bad/training.parquet.tmp`)).toBeUndefined();
    const composed = standin.requests.find((r) => r.kind === "compose")!;
    const deleted = standin.requests.find((r) => r.kind === "delete")!;
    expect(deleted.status).toBe(204);
    expect(deleted.query.ifGenerationMatch).toBeDefined();
    expect(composed.status).toBe(200);
  });

  it("lands the same composite through 20% injected 503s on compose", async () => {
    const bucket = gcs();
    const { sources, data } = await stageParts(bucket, "flaky/", 12, 800);
    const groups = [sources.slice(0, 6), sources.slice(6)];
    standin.faults.configure({ failRate: 0.2, failStatus: 503, failKinds: ["compose"], seed: 11 });
    const halves = [];
    for (const [i, group] of groups.entries()) halves.push(await bucket.compose(group, `flaky/half-${i}`, { ifGenerationMatch: "0" }));
    for (let i = 0; i < 16; i++) {
      const info = await bucket.compose(
        halves.map((h) => ({ name: h.name, generation: h.generation! })),
        `flaky/training-${i}.parquet`,
        { ifGenerationMatch: "0", metadata: { run: "flaky" }, expected: { bytes: data.length, crc32c: crcOf(data) } },
      );
      expect(info).toMatchObject({ bytes: data.length, crc32c: crcOf(data), componentCount: 12, metadata: { run: "flaky" } });
      expectSameBytes(await standin.readObject(BUCKET, `${PREFIX}flaky/training-${i}.parquet`), data);
    }
    const composes = standin.requests.filter((r) => r.kind === "compose");
    expect(composes.filter((r) => r.injected && r.status === 503).length).toBeGreaterThanOrEqual(2);
    expect(composes.filter((r) => r.status === 200)).toHaveLength(18);
  });

  it("accepts its own composite when the answer was lost and the retry meets the precondition (412)", async () => {
    const bucket = gcs();
    const { sources, data } = await stageParts(bucket, "lost/", 3);
    standin.requests.length = 0;
    standin.faults.loseNext(1, 503, ["compose"]);
    const info = await bucket.compose(sources, "lost/training.parquet.tmp", {
      ifGenerationMatch: "0",
      metadata: { run: "lost" },
      expected: { bytes: data.length, crc32c: crcOf(data) },
    });
    const stored = standin.getObject(BUCKET, `${PREFIX}lost/training.parquet.tmp`)!;
    expect(info).toMatchObject({ generation: stored.generation, crc32c: crcOf(data), componentCount: 3, metadata: { run: "lost" } });
    expect(standin.requests.filter((r) => r.kind === "compose").map((r) => r.status)).toEqual([503, 412]);

    // The same 412 on a first attempt is another writer's object, never taken for ours.
    const other = await rejection(
      bucket.compose(sources, "lost/training.parquet.tmp", {
        ifGenerationMatch: "0",
        metadata: { run: "lost" },
        expected: { bytes: data.length, crc32c: crcOf(data) },
      }),
    );
    expect(other.reason).toBe("gcs-precondition-failed");
  });

  it("refuses parts of another storage class than the destination's, as Cloud Storage does", async () => {
    const bucket = gcs();
    const plain = await standin.putObject(BUCKET, `${PREFIX}class/part-0`, Buffer.from("standard part"));
    const cold = await standin.putObject(BUCKET, `${PREFIX}class/part-1`, Buffer.from("nearline part"), {}, { storageClass: "NEARLINE" });
    const err = await rejection(
      bucket.compose(
        [
          { name: "class/part-0", generation: plain.generation },
          { name: "class/part-1", generation: cold.generation },
        ],
        "class/out",
        { ifGenerationMatch: "0" },
      ),
    );
    expect(err.reason).toBe("compose-storage-class-mismatch");
    expect(err.message).toContain(
      "Cannot compose object with destination storage class STANDARD from source components that have different storage classes (NEARLINE)",
    );
    expect(standin.getObject(BUCKET, `${PREFIX}class/out`)).toBeUndefined();
  });

  it("names the missing permission and the role when composing is denied", async () => {
    const bucket = gcs({}, DENIED);
    const part = await standin.putObject(DENIED, `${PREFIX}part-0`, Buffer.from("part"));
    standin.faults.deny(DENIED, ["storage.objects.create"]);
    const err = await rejection(bucket.compose([{ name: "part-0", generation: part.generation }], "training.parquet", { ifGenerationMatch: "0" }));
    expect(err.reason).toBe("gcs-permission-denied");
    expect(err.retryable).toBe(false);
    expect(err.message).toContain("missing storage.objects.create");
    expect(err.fix).toContain(`roles/storage.objectAdmin on gs://${DENIED}`);
    expect(standin.getObject(DENIED, `${PREFIX}training.parquet`)).toBeUndefined();
  });
});

describe("GcsBucket.move against the Cloud Storage stand-in", () => {
  it("publishes the part under its final name with metadata and a generation precondition, server-side, and removes the part", async () => {
    const bucket = gcs();
    const { sources, data } = await stageParts(bucket, "move/", 2);
    const tmp = await bucket.compose(sources, "move/training.parquet.tmp", { ifGenerationMatch: "0" });
    const earlier = await standin.putObject(BUCKET, `${PREFIX}move/training.parquet`, Buffer.from("yesterday's file"));
    standin.requests.length = 0;
    const metadata = { pair: "eurusd", rows: "10" };
    const info = await bucket.move({ name: tmp.name, generation: tmp.generation! }, "move/training.parquet", {
      ifGenerationMatch: earlier.generation,
      metadata,
      contentType: "application/vnd.apache.parquet",
    });

    const stored = standin.getObject(BUCKET, `${PREFIX}move/training.parquet`)!;
    expect(info).toEqual({
      name: "move/training.parquet",
      bytes: data.length,
      crc32c: crcOf(data),
      generation: stored.generation,
      metadata,
      componentCount: 2,
    });
    expect(stored).toMatchObject({ metadata, contentType: "application/vnd.apache.parquet" });
    expectSameBytes(await standin.readObject(BUCKET, stored.name), data);
    expect(standin.getObject(BUCKET, `${PREFIX}move/training.parquet.tmp`)).toBeUndefined();
    // No byte through the client: a metadata read of the pinned source, a compose, a pinned delete.
    expect(standin.requests.map((r) => `${r.kind} ${r.status}`)).toEqual(["metadata 200", "compose 200", "delete 204"]);
    expect(standin.requests[0]!.query.generation).toBe(tmp.generation);
    expect(standin.requests[1]!.query.ifGenerationMatch).toBe(earlier.generation);
    expect(standin.requests[2]!.query.ifGenerationMatch).toBe(tmp.generation);
  });

  it("keeps the source's metadata when given none, and finishes when the delete's answer is lost", async () => {
    const bucket = gcs();
    const table = await localTable("keep-meta.parquet", 5000);
    const put = await bucket.put(table.path, "keep/part", { crc32c: crcOf(table.data) }, { stage: "aligned" });
    standin.faults.loseNext(1, 503, ["delete"]);
    const info = await bucket.move({ name: "keep/part", generation: put.generation! }, "keep/final", { ifGenerationMatch: "0" });
    expect(info.metadata).toEqual({ stage: "aligned" });
    expect(standin.getObject(BUCKET, `${PREFIX}keep/part`)).toBeUndefined();
    expect(standin.requests.filter((r) => r.kind === "delete").map((r) => r.status)).toEqual([503, 404]);
  });

  it("refuses the move when the destination changed meanwhile; the earlier object keeps its bytes and the source stays", async () => {
    const bucket = gcs();
    const table = await localTable("race.parquet", 4000);
    const put = await bucket.put(table.path, "race/training.parquet.tmp", { crc32c: crcOf(table.data) });
    const seen = await standin.putObject(BUCKET, `${PREFIX}race/training.parquet`, Buffer.from("version the job saw"));
    const other = await standin.putObject(BUCKET, `${PREFIX}race/training.parquet`, Buffer.from("another execution's version"));
    const err = await rejection(
      bucket.move({ name: "race/training.parquet.tmp", generation: put.generation! }, "race/training.parquet", { ifGenerationMatch: seen.generation }),
    );
    expect(err.reason).toBe("gcs-precondition-failed");
    expect(standin.getObject(BUCKET, `${PREFIX}race/training.parquet`)!.generation).toBe(other.generation);
    expect((await standin.readObject(BUCKET, `${PREFIX}race/training.parquet`)).toString()).toBe("another execution's version");
    expect(standin.getObject(BUCKET, `${PREFIX}race/training.parquet.tmp`)!.generation).toBe(put.generation);
  });

  it("refuses to move a source that was replaced after its generation was read", async () => {
    const bucket = gcs();
    const first = await standin.putObject(BUCKET, `${PREFIX}gone/part`, Buffer.from("first"));
    await standin.putObject(BUCKET, `${PREFIX}gone/part`, Buffer.from("second"));
    const err = await rejection(bucket.move({ name: "gone/part", generation: first.generation }, "gone/final"));
    expect(err.reason).toBe("source-changed");
    expect(err.message).toContain(`gs://${BUCKET}/${PREFIX}gone/part is no longer generation ${first.generation}`);
    expect(standin.getObject(BUCKET, `${PREFIX}gone/final`)).toBeUndefined();
  });
});

describe("GcsBucket.put with a byte range", () => {
  it("uploads exactly bytes [start, end) of the local file, in resumable chunks, verified by the declared crc32c", async () => {
    const bucket = gcs();
    const table = await localTable("ranged.parquet", 3 * 1024 * 1024);
    const start = 123_457;
    const end = 2 * 1024 * 1024 + 99;
    const part = table.data.subarray(start, end);
    const put = await bucket.put(table.path, "ranged/part", { crc32c: crcOf(part) }, { table: "agg_eurusd" }, { start, end });
    expect(put).toMatchObject({ bytes: part.length, checksums: { crc32c: crcOf(part) } });
    expectSameBytes(await standin.readObject(BUCKET, `${PREFIX}ranged/part`), part);
    // Without a sha256 only crc32c is verified and no sha256 is recorded.
    expect(standin.getObject(BUCKET, `${PREFIX}ranged/part`)!.metadata).toEqual({ table: "agg_eurusd" });
    const start0 = standin.requests.find((r) => r.kind === "upload-start")!;
    expect(start0.query.ifGenerationMatch).toBe("0");
    expect(standin.requests.filter((r) => r.kind === "upload-chunk").length).toBe(Math.ceil(part.length / CHUNK));
  });

  it("rejects a range whose bytes do not match the expected crc32c, and one past the end of the file, leaving no object", async () => {
    const bucket = gcs();
    const table = await localTable("ranged-bad.parquet", 100_000);
    const wrong = await rejection(bucket.put(table.path, "ranged/bad", { crc32c: crcOf(table.data.subarray(0, 50_000)) }, {}, { start: 1, end: 50_001 }));
    expect(wrong.reason).toBe("checksum-mismatch");
    const past = await rejection(bucket.put(table.path, "ranged/bad", { crc32c: crcOf(table.data) }, {}, { start: 50_000, end: 100_001 }));
    expect(past.reason).toBe("range-out-of-bounds");
    expect(standin.getObject(BUCKET, `${PREFIX}ranged/bad`)).toBeUndefined();
  });
});

// The stand-in's compose on its own, driven by @google-cloud/storage's own calls (Bucket.combine
// and File.request, the call combine makes): the rules Cloud Storage documents for compose that
// GcsBucket never exercises itself (see standins/gcs.ts, `compose`).
import { Storage } from "@google-cloud/storage";
import { crc32c } from "@node-rs/crc32";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { crc32cBase64 } from "../../src/checksum.ts";
import { authClientForEndpoint } from "../../src/gcp/auth.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";

const BUCKET = "bqx-standin-compose";
const DENIED = "bqx-standin-compose-denied";

let standin: GcsStandIn;

function library(): Storage {
  return new Storage({
    apiEndpoint: standin.endpoint,
    authClient: authClientForEndpoint(standin.endpoint)!,
    useAuthWithCustomEndpoint: true,
    retryOptions: { autoRetry: false },
  });
}

const crcOf = (data: Buffer): string => crc32cBase64(crc32c(data));

/** What the library's own compose call answers, or its error status and message. */
async function rawCompose(
  destination: string,
  json: object,
  qs: Record<string, string> = {},
): Promise<{ status: number; message: string; body: Record<string, unknown> }> {
  const file = library().bucket(BUCKET).file(destination);
  return new Promise((resolve) => {
    file.request({ method: "POST", uri: "/compose", maxRetries: 0, json, qs }, (err, body) => {
      const e = err as { code?: number; message?: string } | null;
      resolve({ status: e ? (e.code ?? 0) : 200, message: e?.message ?? "", body: (body ?? {}) as Record<string, unknown> });
    });
  });
}

beforeAll(async () => {
  standin = await startGcsStandIn({ buckets: [BUCKET, DENIED] });
});

afterAll(async () => {
  await standin?.close();
});

afterEach(() => {
  standin.faults.reset();
  standin.requests.length = 0;
});

describe("the stand-in's compose, driven by the library's own calls", () => {
  it("answers Bucket.combine() (generations sent as numbers) with the concatenation, and 400s for no sources", async () => {
    const a = await standin.putObject(BUCKET, "raw/a", Buffer.from("hello, "));
    const b = await standin.putObject(BUCKET, "raw/b", Buffer.from("world"));
    const lib = library().bucket(BUCKET);
    await lib.combine(
      [lib.file("raw/a", { generation: Number(a.generation) }), lib.file("raw/b", { generation: Number(b.generation) })],
      lib.file("raw/ab.txt"),
    );
    expect((await standin.readObject(BUCKET, "raw/ab.txt")).toString()).toBe("hello, world");
    expect(standin.getObject(BUCKET, "raw/ab.txt")).toMatchObject({ contentType: "text/plain", componentCount: 2 });
    const none = await rawCompose("raw/none", { sourceObjects: [] });
    expect(none).toMatchObject({ status: 400, message: "You must provide at least one source component." });
  });

  it("holds a source's objectPreconditions and the destination's ifMetagenerationMatch (412)", async () => {
    const a = await standin.putObject(BUCKET, "raw/pre-a", Buffer.from("a"));
    const stale = await rawCompose("raw/pre-out", {
      sourceObjects: [{ name: "raw/pre-a", objectPreconditions: { ifGenerationMatch: String(Number(a.generation) - 1) } }],
    });
    expect(stale.status).toBe(412);
    const live = await rawCompose("raw/pre-out", { sourceObjects: [{ name: "raw/pre-a", objectPreconditions: { ifGenerationMatch: a.generation } }] });
    expect(live.status).toBe(200);
    expect(live.body).toMatchObject({ name: "raw/pre-out", componentCount: 1, size: "1", metageneration: "1" });
    expect(live.body.md5Hash).toBeUndefined();
    const meta = await rawCompose("raw/pre-out", { sourceObjects: [{ name: "raw/pre-a" }] }, { ifMetagenerationMatch: "2" });
    expect(meta.status).toBe(412);
    const missing = await rawCompose("raw/absent-out", { sourceObjects: [{ name: "raw/pre-a" }] }, { ifMetagenerationMatch: "1" });
    expect(missing.status).toBe(412);
  });

  it("computes the result's crc32c from the bytes, never from a checksum in the request", async () => {
    const a = await standin.putObject(BUCKET, "raw/crc-a", Buffer.from("abc"));
    const answer = await rawCompose("raw/crc-out", {
      destination: { crc32c: "AAAAAA==", md5Hash: "bm90IGl0" },
      sourceObjects: [{ name: "raw/crc-a", generation: a.generation }],
    });
    expect(answer.status).toBe(200);
    expect(answer.body.crc32c).toBe(crcOf(Buffer.from("abc")));
    expect(answer.body.md5Hash).toBeUndefined();
  });

  it("needs storage.objects.get on the sources and storage.objects.delete to replace the destination", async () => {
    const a = await standin.putObject(DENIED, "raw/perm-a", Buffer.from("a"));
    await standin.putObject(DENIED, "raw/perm-out", Buffer.from("existing"));
    const lib = library().bucket(DENIED);
    standin.faults.deny(DENIED, ["storage.objects.get"]);
    await expect(lib.combine([lib.file("raw/perm-a", { generation: Number(a.generation) })], lib.file("raw/perm-new"))).rejects.toMatchObject({
      code: 403,
      message: expect.stringContaining("storage.objects.get"),
    });
    standin.faults.deny(DENIED, ["storage.objects.delete"]);
    await expect(lib.combine([lib.file("raw/perm-a")], lib.file("raw/perm-out"))).rejects.toMatchObject({
      code: 403,
      message: expect.stringContaining("storage.objects.delete"),
    });
    await lib.combine([lib.file("raw/perm-a")], lib.file("raw/perm-new"));
    expect((await standin.readObject(DENIED, "raw/perm-new")).toString()).toBe("a");
  });
});

// Never a ghost success: exit 0 only when the object in the bucket has the checksum of the
// validated file; a previous good output is never replaced by an invalid or corrupted one; the
// logs never carry credentials, whatever the environment holds.
import { createHash, generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { startJob, waitFor } from "../support/job-process.ts";
import { runJob } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse } from "../../standins/tiny-warehouse.ts";

const PAIR = "eurusd";
const TRAINING = `training_${PAIR}.parquet`;
const MANIFEST = `training_${PAIR}.manifest.json`;
const OUTPUT = "bqx-ghost-output";
let dir: string;
let warehouse: string;
let gcs: GcsStandIn;

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");
function env(work: string, extra: Record<string, string> = {}): Record<string, string> {
  return { TARGET_PAIR: PAIR, WAREHOUSE: warehouse, WORK_DIR: path.join(dir, work), MAX_WORKERS: "2", ...TINY_VALIDATION_ENV, ...extra };
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "ghost-success-test-"));
  warehouse = path.join(dir, "warehouse.duckdb");
  await buildTinyWarehouse({ path: warehouse, pairs: [PAIR] });
  gcs = await startGcsStandIn({ buckets: [OUTPUT] });
}, 60_000);

afterAll(async () => {
  await gcs?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("a previous good output survives a later run that cannot produce a valid one", () => {
  it("keeps the local bucket's file and manifest byte for byte when the next run fails validation", async () => {
    const bucket = path.join(dir, "local-bucket");
    const good = await runJob(env("local-a", { OUTPUT_URI: bucket }));
    expect(good.code).toBe(0);
    const before = [await readFile(path.join(bucket, TRAINING)), await readFile(path.join(bucket, MANIFEST))];

    const bad = await runJob(env("local-b", { OUTPUT_URI: bucket, MIN_ROWS: "1000000" }));
    expect(bad.code).toBe(1);
    expect(bad.stdout).toMatch(/training file failed validation:.*rows: \d+ < MIN_ROWS 1000000/s);
    expect(bad.lines.some((l) => l.stage === "upload")).toBe(false);
    expect(sha256(await readFile(path.join(bucket, TRAINING)))).toBe(sha256(before[0]!));
    expect(sha256(await readFile(path.join(bucket, MANIFEST)))).toBe(sha256(before[1]!));
  }, 60_000);

  it("exits 1 and keeps the local bucket's previous file when the copy in the bucket is altered before it is renamed into place", async () => {
    const bucket = path.join(dir, "local-corrupt-bucket");
    const good = await runJob(env("corrupt-a", { OUTPUT_URI: bucket }));
    expect(good.code).toBe(0);
    const before = await readFile(path.join(bucket, TRAINING));
    // A different (still valid) file, and a byte flipped in the bucket's copy of it (FAULT_CORRUPT_UPLOADS).
    const bad = await runJob(env("corrupt-b", { OUTPUT_URI: bucket, ROW_LIMIT: "30", FAULT_CORRUPT_UPLOADS: "true" }));
    expect(bad.code, bad.stdout.slice(-2000)).toBe(1);
    // The first copy it makes is a part's, staged while extracting: refused there, never published.
    expect(bad.stdout).toMatch(/stage extract failed: .*checksum mismatch after copying .*\.parquet to .*_staging\/eurusd\/parts\//);
    expect(bad.lines.some((l) => String(l.message).startsWith("done:"))).toBe(false);
    expect(sha256(await readFile(path.join(bucket, TRAINING)))).toBe(sha256(before));
    expect((await readdir(bucket, { recursive: true })).filter((n) => n.includes(".uploading-"))).toEqual([]);
  }, 60_000);

  it("exits 1 and keeps the previous object's generation and bytes when every upload arrives corrupted", async () => {
    const good = await runJob(env("gcs-a", { OUTPUT_URI: `gs://${OUTPUT}/ghost`, GCS_ENDPOINT: gcs.endpoint }));
    expect(good.code, good.stdout.slice(-2000)).toBe(0);
    const before = gcs.getObject(OUTPUT, `ghost/${TRAINING}`)!;
    const beforeBytes = await gcs.readObject(OUTPUT, `ghost/${TRAINING}`);
    const manifestBefore = gcs.getObject(OUTPUT, `ghost/${MANIFEST}`)!;

    // A different (still valid) file this time, so a replacement would show; once the write
    // probe has passed, every upload is corrupted on the wire, retries included.
    const job = startJob(env("gcs-b", { OUTPUT_URI: `gs://${OUTPUT}/ghost`, GCS_ENDPOINT: gcs.endpoint, ROW_LIMIT: "30" }));
    expect(await waitFor(job, () => job.stdout().includes("stage extract: started"))).toBe(true);
    gcs.faults.configure({ corruptUploads: Infinity });
    try {
      const corrupted = await job.done;
      expect(corrupted.code, corrupted.stdout.slice(-2000)).toBe(1);
      const failure = corrupted.lines
        .filter((l) => l.severity === "ERROR")
        .map((l) => String(l.message))
        .join("\n");
      expect(failure).toMatch(/stage extract failed: .*(CRC32C|checksum)/i);
      expect(corrupted.lines.some((l) => String(l.message).startsWith("done:"))).toBe(false);
    } finally {
      gcs.faults.reset();
    }
    const after = gcs.getObject(OUTPUT, `ghost/${TRAINING}`)!;
    expect(after.generation).toBe(before.generation);
    expect(sha256(await gcs.readObject(OUTPUT, `ghost/${TRAINING}`))).toBe(sha256(beforeBytes));
    expect(gcs.getObject(OUTPUT, `ghost/${MANIFEST}`)!.generation).toBe(manifestBefore.generation);
  }, 90_000);
});

describe("credentials never reach the logs", () => {
  it("prints no private key, token or URL password given through the environment, at debug level, on success and on failure", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const keyId = "f00dfacefeedc0ffee0123456789abcdef012345";
    const saFile = path.join(dir, "service-account.json");
    await writeFile(
      saFile,
      JSON.stringify({
        type: "service_account",
        project_id: "bqx-ml",
        private_key_id: keyId,
        private_key: pem,
        client_email: "job@bqx-ml.iam.gserviceaccount.com",
        client_id: "1",
        token_uri: "https://oauth2.googleapis.com/token",
      }),
    );
    const token = "ya29.a0FakeAccessTokenForTheLeakTest0123456789";
    const secrets = {
      GOOGLE_APPLICATION_CREDENTIALS: saFile,
      GOOGLE_OAUTH_ACCESS_TOKEN: token,
      CLOUDSDK_AUTH_ACCESS_TOKEN: token,
      AWS_SECRET_ACCESS_KEY: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYFAKEKEY",
      LOG_LEVEL: "debug",
    };
    const runs = [
      // Success on the embedded backend.
      await runJob(env("secrets-ok", { OUTPUT_URI: path.join(dir, "secrets-bucket"), ...secrets })),
      // Real Cloud Storage (no stand-in): the library reads the key file, signs a JWT and fails offline.
      await runJob(env("secrets-gcs", { OUTPUT_URI: "gs://bqx-not-reachable/out", ...secrets }), { timeoutMs: 90_000 }),
      // A credential pasted into a URL, refused by the configuration check.
      await runJob(
        env("secrets-config", { GCS_ENDPOINT: "http://svc:hunter2-url-password@127.0.0.1:9/x", OUTPUT_URI: "s3://AKIAFAKE:wJalrXUtnFEMI@bucket", ...secrets }),
      ),
    ];
    expect(runs.map((r) => r.code)).toEqual([0, 1, 2]);
    expect(runs[1]!.stdout).toMatch(/cannot write a probe object to gs:\/\/bqx-not-reachable\/out/);
    const keyBody = pem.split("\n")[1]!;
    for (const run of runs) {
      const output = run.stdout + run.stderr;
      for (const secret of [keyBody, "PRIVATE KEY", keyId, token, "ya29.", "wJalrXUtnFEMI", "hunter2-url-password", "eyJhbGciOi" /* a signed JWT */]) {
        expect(output.includes(secret), `${secret} in:\n${output.slice(0, 3000)}`).toBe(false);
      }
    }
  }, 120_000);
});

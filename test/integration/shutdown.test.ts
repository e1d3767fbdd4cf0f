// Shutdown as Cloud Run does it: SIGTERM, then SIGKILL 10 s later. The job must stop starting
// tables, end or abandon what is in flight within 8 s, say what it was doing, leave every
// checkpoint whole or absent and exit non-zero (130); interrupted while copying into the bucket, it
// must leave the previous good output exactly as it was. SIGTSTP/SIGCONT (a task paused around a
// migration) must not break extraction or the upload.
import { existsSync } from "node:fs";
import { readFile, readdir, rm } from "node:fs/promises";

import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { readFooterSummary } from "../../src/parquet/footer.ts";
import { namesIn, points, type ReferenceRun, referenceRun, sha256, startJob, waitFor } from "../support/job-process.ts";
import { runJob } from "../support/run-job.ts";

const PAIR = "eurusd";
const FEATURES = 60;
const TRAINING = `training_${PAIR}.parquet`;
/** Cloud Run sends SIGKILL 10 s after SIGTERM; the job must be gone well before. */
const SHUTDOWN_LIMIT_MS = 8_000;
let dir: string;
let referenceSha: string;
let reference: ReferenceRun;
const measured: Record<string, number> = {};

function env(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return reference.env(name, extra);
}

beforeAll(async () => {
  reference = await referenceRun("shutdown-test-", PAIR, FEATURES);
  ({ dir, sha: referenceSha } = reference);
}, 120_000);

afterAll(async () => {
  console.log(`shutdown: SIGTERM to exit ${JSON.stringify(measured)} ms`);
  await rm(dir, { recursive: true, force: true });
});

describe("SIGTERM", () => {
  it.each([
    ["extract", (p: ReturnType<typeof points>) => p.landed(10), /^extraction stopped: \d+ tables extracted by this attempt and 0 reused are kept as checkpoints/],
    ["merge", (p: ReturnType<typeof points>) => p.appending, /^merge stopped after \d+ of 61 tables; the partial output is discarded/],
  ])("during the %s stage: exits 130 within 8 s, says what it stopped, leaves checkpoints whole or absent; the next run completes the same file", async (stage, point, stopped) => {
    const e = env(`term-${stage}`);
    const job = startJob(e);
    expect(await waitFor(job, point(points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR)))).toBe(true);
    const sent = performance.now();
    job.child.kill("SIGTERM");
    const run = await job.done;
    const elapsed = performance.now() - sent;
    measured[stage] = Math.round(elapsed);
    expect(run.code, run.stdout.slice(-2000)).toBe(130);
    expect(elapsed).toBeLessThan(SHUTDOWN_LIMIT_MS);

    const messages = run.lines.map((l) => String(l.message));
    expect(messages).toContain("received SIGTERM: stopping; checkpoints already written are kept for the next attempt");
    expect(messages).toContainEqual(expect.stringMatching(stopped));
    expect(messages).toContain(`stage ${stage} failed: interrupted (Error: received SIGTERM)`);

    const work = path.join(e.WORK_DIR!, PAIR);
    for (const name of namesIn(path.join(work, "checkpoints"))) {
      if (name.includes(".tmp-")) continue; // never trusted, removed by the next run
      await expect(readFooterSummary(path.join(work, "checkpoints", name)), name).resolves.toBeDefined();
    }
    expect(existsSync(path.join(work, TRAINING))).toBe(false);
    expect(existsSync(path.join(work, `${TRAINING}.tmp`))).toBe(false);
    expect(await readdir(e.OUTPUT_URI!)).toEqual([]);

    const again = await runJob(e);
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  }, 90_000);
});

/** Every file under `dir` (staging copies and sidecars included) with the SHA-256 of its bytes. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    files[path.relative(dir, file)] = createHash("sha256").update(await readFile(file)).digest("hex");
  }
  return files;
}

describe("SIGTERM during the upload", () => {
  it("while the training file is being copied into a bucket holding a previous good output: exits 130 within 8 s and leaves the bucket byte for byte as it was", async () => {
    const e = env("term-upload");
    const good = await runJob(e);
    expect(good.code, good.stdout.slice(-2000)).toBe(0);
    const before = await snapshot(e.OUTPUT_URI!);
    expect(Object.keys(before)).toEqual(expect.arrayContaining([TRAINING, `training_${PAIR}.manifest.json`]));

    // A different file this time (fewer rows), so a replaced object would show.
    const next = { ...e, WORK_DIR: path.join(dir, "term-upload", "work-2"), ROW_LIMIT: "200" };
    const job = startJob(next);
    const copying = () => namesIn(e.OUTPUT_URI!).some((f) => f.startsWith(`${TRAINING}.uploading-`));
    expect(await waitFor(job, copying, 1)).toBe(true);
    // Frozen at once, so the signal is handled before the copy can get any further (a JavaScript
    // handler runs only on the next turn of the event loop); then SIGTERM, as Cloud Run sends it.
    job.child.kill("SIGSTOP");
    const sent = performance.now();
    job.child.kill("SIGTERM");
    job.child.kill("SIGCONT");
    const run = await job.done;
    const elapsed = performance.now() - sent;
    measured.upload = Math.round(elapsed);
    expect(run.code, run.stdout.slice(-2000)).toBe(130);
    expect(elapsed).toBeLessThan(SHUTDOWN_LIMIT_MS);
    const messages = run.lines.map((l) => String(l.message));
    expect(messages).toContain("stage upload failed: interrupted (Error: received SIGTERM)");
    expect(messages.some((m) => m.startsWith("uploaded ") || m.startsWith("done:"))).toBe(false);

    // The same files with the same bytes: the training file, its sidecar and the manifest are the
    // previous run's, and no `.uploading-` staging copy is left anywhere in the bucket.
    expect(await snapshot(e.OUTPUT_URI!)).toEqual(before);
  }, 90_000);
});

describe("SIGTSTP then SIGCONT", () => {
  it.each([
    ["extraction", (p: ReturnType<typeof points>) => p.landed(5)],
    ["the merge", (p: ReturnType<typeof points>) => p.appending],
    ["the upload", (p: ReturnType<typeof points>) => p.uploading],
  ])("during %s: the run pauses, resumes and exits 0 with the same file", async (label, point) => {
    const e = env(`pause-${label.replace(/\W+/g, "-")}`);
    const job = startJob(e);
    expect(await waitFor(job, point(points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR)), 1)).toBe(true);
    const state = async () => (await readFile(`/proc/${job.child.pid}/stat`, "utf8")).split(" ")[2];
    job.child.kill("SIGTSTP");
    // The kernel discards SIGTSTP for a process in an orphaned process group (a runner without job
    // control, as CI can be), so there the job never sees it. SIGSTOP right behind it pauses the
    // job either way: what matters is that in-flight work survives the pause.
    job.child.kill("SIGSTOP");
    await sleep(100);
    // Really stopped (state T in /proc), not already finished.
    expect(await state()).toBe("T");
    await sleep(1_400);
    job.child.kill("SIGCONT");
    const run = await job.done;
    expect(run.code, run.stdout.slice(-2000)).toBe(0);
    expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  }, 90_000);
});

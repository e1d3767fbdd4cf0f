// Shutdown as Cloud Run does it: SIGTERM, then SIGKILL 10 s later. The job must stop starting
// tables, end or abandon what is in flight within 8 s, say what it was doing, keep the parts it
// staged for the next attempt and exit non-zero (130); interrupted while it assembles the file in
// the bucket, it must leave the previous good output exactly as it was. SIGTSTP/SIGCONT (a task
// paused around a migration) must not break extraction or the assembly.
import { readFile, readdir, rm } from "node:fs/promises";

import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import { namesIn, points, stagedParts, type ReferenceRun, referenceRun, sha256, startJob, waitFor } from "../support/job-process.ts";
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
  it("during extraction: exits 130 within 8 s, says what it stopped, keeps the staged parts; the next run completes the same file from them", async () => {
    const e = env("term-extract", { LOG_LEVEL: "debug" });
    const job = startJob(e);
    expect(await waitFor(job, points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR).staged(10))).toBe(true);
    const sent = performance.now();
    job.child.kill("SIGTERM");
    const run = await job.done;
    const elapsed = performance.now() - sent;
    measured.extract = Math.round(elapsed);
    expect(run.code, run.stdout.slice(-2000)).toBe(130);
    expect(elapsed).toBeLessThan(SHUTDOWN_LIMIT_MS);

    const messages = run.lines.map((l) => String(l.message));
    expect(messages).toContain("received SIGTERM: stopping; parts already staged are kept for the next attempt");
    expect(messages).toContainEqual(
      expect.stringMatching(/^extraction stopped: \d+ parts are staged in .*_staging\/eurusd\/parts\/ for the next attempt; \d+ not extracted$/),
    );
    expect(messages).toContain("stage extract failed: interrupted (Error: received SIGTERM)");
    const staged = stagedParts(e.OUTPUT_URI!, PAIR);
    expect(staged.length).toBeGreaterThanOrEqual(10);
    expect(namesIn(e.OUTPUT_URI!).filter((f) => f.startsWith("training_"))).toEqual([]);

    const again = await runJob(e);
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    expect(again.lines.find((l) => l.stage === "extract" && l.reused !== undefined)).toMatchObject({ reused: staged.length });
    expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  }, 90_000);
});

/** Every file under `dir` (staging copies and sidecars included) with the SHA-256 of its bytes. */
async function snapshot(dir: string): Promise<Record<string, string>> {
  const files: Record<string, string> = {};
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    files[path.relative(dir, file)] = createHash("sha256")
      .update(await readFile(file))
      .digest("hex");
  }
  return files;
}

describe("SIGTERM during the upload", () => {
  it("while the file is being assembled in a bucket holding a previous good output: exits 130 within 8 s and leaves the published file, its metadata and manifest byte for byte as they were", async () => {
    const e = env("term-upload");
    const good = await runJob(e);
    expect(good.code, good.stdout.slice(-2000)).toBe(0);
    const before = await snapshot(e.OUTPUT_URI!);
    expect(Object.keys(before)).toEqual(expect.arrayContaining([TRAINING, `training_${PAIR}.manifest.json`]));

    // A different file this time (fewer rows), so a replaced object would show.
    const next = { ...e, WORK_DIR: path.join(dir, "term-upload", "work-2"), ROW_LIMIT: "200" };
    const job = startJob(next);
    expect(await waitFor(job, points(next.WORK_DIR, e.OUTPUT_URI!, PAIR, job.stdout).assembling, 1)).toBe(true);
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
    expect(messages.some((m) => m.startsWith("published ") || m.startsWith("done:"))).toBe(false);

    // The same files with the same bytes: the training file, its sidecar and the manifest are the
    // previous run's, and no `.uploading-` staging copy is left anywhere in the bucket. The parts
    // under _staging/ are this attempt's, kept for the next one.
    const after = await snapshot(e.OUTPUT_URI!);
    const published = (files: Record<string, string>) => Object.fromEntries(Object.entries(files).filter(([f]) => !f.split(path.sep).includes("_staging")));
    expect(published(after)).toEqual(before);
    expect(Object.keys(after).filter((f) => f.includes(".uploading-"))).toEqual([]);
  }, 90_000);
});

describe("SIGTSTP then SIGCONT", () => {
  it.each([
    ["extraction", (p: ReturnType<typeof points>) => p.staged(5)],
    ["the assembly in the bucket", (p: ReturnType<typeof points>) => p.assembling],
  ])(
    "during %s: the run pauses, resumes and exits 0 with the same file",
    async (label, point) => {
      const e = env(`pause-${label.replace(/\W+/g, "-")}`);
      const job = startJob(e);
      expect(await waitFor(job, point(points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR, job.stdout)), 1)).toBe(true);
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
    },
    90_000,
  );
});

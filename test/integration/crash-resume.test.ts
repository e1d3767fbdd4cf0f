// Crash and resume: the real job is killed with SIGKILL (no handler runs, as when a container
// disappears) at points chosen from what it has written, then run again on the same bucket.
// Every re-run must exit 0 with a training file byte-identical to an uninterrupted run's, without
// extracting again any part that was staged whole; a damaged part must be noticed and extracted
// again alone. (Kills during compose and between compose and publish, where Cloud Storage composes
// for real, are in pipeline-gcp.test.ts.) HEAVY=1 adds dozens of kill points.
import { existsSync } from "node:fs";
import { open, readFile, rm, truncate } from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { namesIn, points, stagedParts, type ReferenceRun, referenceRun, sha256, startJob, waitFor } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";

const PAIR = "eurusd";
const FEATURES = 60;
const HEAVY = process.env.HEAVY === "1";
const TRAINING = `training_${PAIR}.parquet`;
let dir: string;
let referenceSha: string;
let reference: ReferenceRun;
const tally = { tried: 0, survived: 0, reachedBeforeExit: 0 };

function env(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return reference.env(name, extra);
}

/** Parts the run extracted itself (LOG_LEVEL=debug logs one line per part), by fingerprint. */
function extractedParts(run: JobRun): string[] {
  return run.lines.filter((l) => /^extracted \S+ row groups \d+-\d+ as part /.test(String(l.message))).map((l) => String(l.part));
}

/** Kills a fresh run at `point` with SIGKILL, re-runs it and compares the file. */
async function killAndResume(name: string, point: (p: ReturnType<typeof points>) => () => boolean): Promise<void> {
  const e = env(name, { LOG_LEVEL: "debug" });
  const job = startJob(e);
  const reached = await waitFor(job, point(points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR, job.stdout)), 1);
  job.child.kill("SIGKILL");
  const killed = await job.done;
  tally.tried += 1;
  if (reached) tally.reachedBeforeExit += 1;
  expect(reached, `${name}: the kill point was never reached; the job exited ${killed.code}`).toBe(true);
  expect(killed.signal).toBe("SIGKILL");
  const staged = stagedParts(e.OUTPUT_URI!, PAIR);

  const again = await runJob(e);
  expect(again.code, again.stdout.slice(-2000)).toBe(0);
  expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  // No part staged whole before the kill was extracted again; every part is accounted for once.
  const extracted = extractedParts(again);
  expect(extracted.filter((f) => staged.includes(f))).toEqual([]);
  const figures = again.lines.find((l) => l.stage === "extract" && l.extracted !== undefined)!;
  expect(figures.parts).toBe(FEATURES + 1);
  expect(figures.reused).toBe(staged.length);
  // Nothing left behind: no staging prefix, no temporary object, no work dir.
  expect(existsSync(path.join(e.OUTPUT_URI!, "_staging"))).toBe(false);
  expect(namesIn(e.OUTPUT_URI!).filter((f) => f.includes(".uploading-"))).toEqual([]);
  expect(existsSync(path.join(e.WORK_DIR!, PAIR))).toBe(false);
  tally.survived += 1;
  await rm(path.join(dir, name), { recursive: true, force: true });
}

beforeAll(async () => {
  reference = await referenceRun("crash-resume-test-", PAIR, FEATURES);
  ({ dir, sha: referenceSha } = reference);
}, 120_000);

afterAll(async () => {
  // The figures for the closing note.
  console.log(`crash-resume: ${tally.tried} kill points tried, ${tally.survived} survived (identical file, no staged part extracted again)`);
  await rm(dir, { recursive: true, force: true });
});

describe("a run killed with SIGKILL resumes to an identical file", () => {
  it.each([
    ["when the first part is staged", (p: ReturnType<typeof points>) => p.staged(1)],
    ["while a part is being written or staged", (p: ReturnType<typeof points>) => p.writing],
    ["when half the parts are staged", (p: ReturnType<typeof points>) => p.staged(FEATURES / 2)],
    ["as the file is being assembled in the bucket", (p: ReturnType<typeof points>) => p.assembling],
  ])(
    "%s",
    async (label, point) => {
      await killAndResume(label.replace(/\W+/g, "-"), point);
    },
    90_000,
  );

  it("extracts again, alone, a part whose chunks were truncated and one whose footer has a flipped byte", async () => {
    const e = env("damaged");
    // A run that stops at validation keeps its staged parts for the next attempt.
    const first = await runJob({ ...e, MIN_ROWS: "100000" });
    expect(first.code).toBe(1);
    const staged = stagedParts(e.OUTPUT_URI!, PAIR).sort();
    expect(staged).toHaveLength(FEATURES + 1);
    const partsDir = path.join(e.OUTPUT_URI!, "_staging", PAIR, "parts");
    const truncated = staged[3]!;
    const flipped = staged[7]!;
    const chunks = path.join(partsDir, `${truncated}.chunks`);
    await truncate(chunks, Math.floor((await readFile(chunks)).length / 2));
    const footer = path.join(partsDir, `${flipped}.footer`);
    const handle = await open(footer, "r+");
    const middle = Math.floor((await handle.stat()).size / 2);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, middle);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, middle);
    await handle.close();

    const again = await runJob({ ...e, LOG_LEVEL: "debug" });
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    expect(extractedParts(again).sort()).toEqual([truncated, flipped].sort());
    const complaints = again.lines.filter((l) => /in the bucket is damaged/.test(String(l.message)));
    expect(complaints.map((l) => l.part).sort()).toEqual([truncated, flipped].sort());
    expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  }, 90_000);

  it.runIf(HEAVY)(
    "survives dozens of kill points (HEAVY=1)",
    async () => {
      const stagedCounts = [1, 2, 3, 4, 6, 8, 11, 15, 19, 24, 29, 34, 40, 45, 50, 55, 58, 60, 61];
      for (const n of stagedCounts) await killAndResume(`heavy-staged-${n}`, (p) => p.staged(n));
      for (let i = 0; i < 6; i++) await killAndResume(`heavy-writing-${i}`, (p) => p.writing);
      for (let i = 0; i < 6; i++) await killAndResume(`heavy-assembling-${i}`, (p) => p.assembling);
      // One bucket killed again and again, each time a little further on, then run to the end.
      const e = env("heavy-chain", { LOG_LEVEL: "debug" });
      for (const n of [5, 20, 40, 60]) {
        const job = startJob(e);
        const reached = await waitFor(job, points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR).staged(n));
        job.child.kill("SIGKILL");
        await job.done;
        tally.tried += 1;
        if (reached) tally.survived += 1;
      }
      const last = await runJob(e);
      expect(last.code).toBe(0);
      expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
      expect(existsSync(path.join(e.WORK_DIR!, PAIR))).toBe(false);
    },
    1_800_000,
  );
});

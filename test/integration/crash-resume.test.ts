// Crash and resume: the real job is killed with SIGKILL (no handler runs, as when a container
// disappears) at points chosen from what it has written, then run again on the same work dir.
// Every re-run must exit 0 with a training file byte-identical to an uninterrupted run's, without
// extracting again any table whose checkpoint had landed; a truncated or corrupted checkpoint
// must be noticed and extracted afresh. HEAVY=1 adds dozens of kill points.
import { existsSync } from "node:fs";
import { open, readFile, rm, truncate } from "node:fs/promises";

import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readFooterSummary } from "../../src/parquet/footer.ts";
import { namesIn, points, type ReferenceRun, referenceRun, sha256, startJob, waitFor } from "../support/job-process.ts";
import { runJob, type JobRun } from "../support/run-job.ts";

const PAIR = "eurusd";
const FEATURES = 60;
const HEAVY = process.env.HEAVY === "1";
const TRAINING = `training_${PAIR}.parquet`;
let dir: string;
let referenceSha: string;
let reference: ReferenceRun;
const tally = { tried: 0, survived: 0, reachedBeforeExit: 0, scratchLeft: 0 };

function env(name: string, extra: Record<string, string> = {}): Record<string, string> {
  return reference.env(name, extra);
}

/** Tables the run extracted itself (LOG_LEVEL=debug logs one line per table). */
function extractedTables(run: JobRun): string[] {
  return run.lines.map((l) => /^extracted ([a-z0-9_]+)(?: after|$)/.exec(String(l.message))?.[1]).filter((t): t is string => t !== undefined);
}

/** Checkpoints complete and recorded at this moment, by table name. */
function landedTables(work: string): string[] {
  return namesIn(path.join(work, PAIR, "checkpoint-sums"))
    .filter((f) => f.endsWith(".parquet.json"))
    .map((f) => f.replace(/\.parquet\.json$/, "").split(".").at(-1)!);
}

/** Every file in the checkpoints dir is a whole parquet file or a temporary name a re-run never trusts. */
async function expectWholeOrTemporary(work: string): Promise<void> {
  const dirPath = path.join(work, PAIR, "checkpoints");
  for (const name of namesIn(dirPath)) {
    if (name.includes(".tmp-")) continue;
    expect(name).toMatch(/\.parquet$/);
    await expect(readFooterSummary(path.join(dirPath, name)), name).resolves.toBeDefined();
  }
}

/** Kills a fresh run at `point` with SIGKILL, checks what it left, re-runs it and compares the file. */
async function killAndResume(name: string, point: (p: ReturnType<typeof points>) => () => boolean): Promise<void> {
  const e = env(name, { LOG_LEVEL: "debug" });
  const job = startJob(e);
  const reached = await waitFor(job, point(points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR)));
  job.child.kill("SIGKILL");
  const killed = await job.done;
  tally.tried += 1;
  if (reached) tally.reachedBeforeExit += 1;
  expect(reached, `${name}: the kill point was never reached; the job exited ${killed.code}`).toBe(true);
  expect(killed.signal).toBe("SIGKILL");
  await expectWholeOrTemporary(e.WORK_DIR!);
  const landed = landedTables(e.WORK_DIR!);
  // A merge killed with its aligned tables in /dev/shm (WORK_DIR on disk) leaves them there; the
  // next merge on the machine removes them.
  const scratch = `/dev/shm/bqx-merge-${PAIR}-${job.child.pid}`;
  if (existsSync(scratch)) tally.scratchLeft += 1;

  const again = await runJob(e);
  expect(again.code, again.stdout.slice(-2000)).toBe(0);
  expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  expect(existsSync(scratch), `${scratch} left by the killed run`).toBe(false);
  // No table whose checkpoint had landed was extracted again, and the manifest says it was reused.
  expect(extractedTables(again).filter((t) => landed.includes(t))).toEqual([]);
  const manifest = JSON.parse(await readFile(path.join(e.OUTPUT_URI!, `training_${PAIR}.manifest.json`), "utf8")) as { tables: { features: { table: string; reused: boolean }[] } };
  const reused = new Set(manifest.tables.features.filter((f) => f.reused).map((f) => f.table.split(".")[1]));
  expect(landed.filter((t) => !t.startsWith("targets_") && !reused.has(t))).toEqual([]);
  // Extracted here or reused, every table is accounted for exactly once.
  expect(extractedTables(again).length + landed.length).toBe(FEATURES + 1);
  tally.survived += 1;
  await rm(path.join(dir, name), { recursive: true, force: true });
}

beforeAll(async () => {
  reference = await referenceRun("crash-resume-test-", PAIR, FEATURES);
  ({ dir, sha: referenceSha } = reference);
}, 120_000);

afterAll(async () => {
  // The figures for the closing note.
  console.log(`crash-resume: ${tally.tried} kill points tried, ${tally.survived} survived (identical file, no landed checkpoint extracted again); ${tally.scratchLeft} left aligned tables in /dev/shm, all removed by the next run`);
  await rm(dir, { recursive: true, force: true });
});

describe("a run killed with SIGKILL resumes to an identical file", () => {
  it.each([
    ["when the first checkpoint has landed", (p: ReturnType<typeof points>) => p.landed(1)],
    ["while a checkpoint is being written", (p: ReturnType<typeof points>) => p.writing],
    ["when half the checkpoints have landed", (p: ReturnType<typeof points>) => p.landed(FEATURES / 2)],
    ["as the merge starts", (p: ReturnType<typeof points>) => p.mergeStarted],
    ["while the merge appends to the output", (p: ReturnType<typeof points>) => p.appending],
    ["while the file is being copied into the bucket", (p: ReturnType<typeof points>) => p.uploading],
  ])("%s", async (label, point) => {
    await killAndResume(label.replace(/\W+/g, "-"), point);
  }, 90_000);

  it("extracts afresh a checkpoint that was truncated and one with a flipped byte, and reuses the rest", async () => {
    const e = env("damaged", { KEEP_CHECKPOINTS: "true" });
    const first = await runJob(e);
    expect(first.code).toBe(0);
    const checkpoints = path.join(e.WORK_DIR!, PAIR, "checkpoints");
    const files = namesIn(checkpoints).filter((f) => f.endsWith(".parquet")).sort();
    const truncated = files[3]!;
    const flipped = files[7]!;
    const full = (await readFile(path.join(checkpoints, truncated))).length;
    await truncate(path.join(checkpoints, truncated), Math.floor(full / 2));
    // A byte in the middle of the data pages: the footer still parses, only the checksum can tell.
    const handle = await open(path.join(checkpoints, flipped), "r+");
    const middle = Math.floor((await handle.stat()).size / 3);
    const byte = Buffer.alloc(1);
    await handle.read(byte, 0, 1, middle);
    byte[0] = byte[0]! ^ 0xff;
    await handle.write(byte, 0, 1, middle);
    await handle.close();
    await expect(readFooterSummary(path.join(checkpoints, flipped))).resolves.toBeDefined();

    const again = await runJob({ ...e, LOG_LEVEL: "debug" });
    expect(again.code, again.stdout.slice(-2000)).toBe(0);
    const table = (file: string) => file.replace(/\.parquet$/, "").split(".").at(-1)!;
    expect(extractedTables(again).sort()).toEqual([table(truncated), table(flipped)].sort());
    expect(again.lines.filter((l) => /from an earlier attempt is truncated, damaged/.test(String(l.message))).map((l) => l.table).sort()).toEqual([table(truncated), table(flipped)].sort());
    expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
  }, 90_000);

  it.runIf(HEAVY)("survives dozens of kill points (HEAVY=1)", async () => {
    const landedCounts = [1, 2, 3, 4, 6, 8, 11, 15, 19, 24, 29, 34, 40, 45, 50, 55, 58, 60];
    for (const n of landedCounts) await killAndResume(`heavy-landed-${n}`, (p) => p.landed(n));
    for (let i = 0; i < 4; i++) await killAndResume(`heavy-writing-${i}`, (p) => p.writing);
    for (let i = 0; i < 3; i++) await killAndResume(`heavy-merge-${i}`, (p) => p.mergeStarted);
    for (let i = 0; i < 3; i++) await killAndResume(`heavy-append-${i}`, (p) => p.appending);
    for (let i = 0; i < 3; i++) await killAndResume(`heavy-upload-${i}`, (p) => p.uploading);
    // One work dir killed again and again, each time a little further on, then run to the end.
    const e = env("heavy-chain", { LOG_LEVEL: "debug" });
    for (const n of [5, 20, 40, 60]) {
      const job = startJob(e);
      const reached = await waitFor(job, points(e.WORK_DIR!, e.OUTPUT_URI!, PAIR).landed(n));
      job.child.kill("SIGKILL");
      await job.done;
      tally.tried += 1;
      if (reached) tally.survived += 1;
      await expectWholeOrTemporary(e.WORK_DIR!);
    }
    const last = await runJob(e);
    expect(last.code).toBe(0);
    expect(await sha256(path.join(e.OUTPUT_URI!, TRAINING))).toBe(referenceSha);
    expect(existsSync(path.join(e.WORK_DIR!, PAIR))).toBe(false);
  }, 1_800_000);
});

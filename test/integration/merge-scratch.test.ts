// Where the merge keeps aligned tables (src/merge/scratch.ts) and what it leaves there: nothing,
// whether the merge succeeds or fails; a directory left by a killed merge is swept by the next.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mergeCheckpoints, type MergeInput } from "../../src/merge/merge.ts";
import { chooseScratch, SCRATCH_HEADROOM_BYTES, SCRATCH_QUEUE_BYTES, sweepStaleScratch } from "../../src/merge/scratch.ts";
import { generateCheckpoints } from "../support/checkpoints.ts";

const SHM = "/dev/shm";
const haveShm = existsSync(SHM) && spawnSync("stat", ["-f", "-c", "%T", SHM], { encoding: "utf8" }).stdout.trim() === "tmpfs";
const GiB = 1024 ** 3;
let disk: string;
let shm: string;

beforeAll(async () => {
  disk = await mkdtemp(path.join(tmpdir(), "merge-scratch-"));
  if (haveShm) shm = await mkdtemp(path.join(SHM, "merge-scratch-test-"));
});

afterAll(async () => {
  await rm(disk, { recursive: true, force: true });
  if (shm) await rm(shm, { recursive: true, force: true });
});

describe.runIf(haveShm)("chooseScratch", () => {
  it("keeps the tables in WORK_DIR when WORK_DIR is in memory already", () => {
    const parts = path.join(shm, "work", "eurusd", "merge-parts");
    const c = chooseScratch({ workDirParts: parts, pair: "eurusd", memoryLimitBytes: 12 * GiB, budgetBytes: 3 * GiB, shmDir: shm });
    expect(c).toMatchObject({ dir: parts, inMemory: true, maxWaitingBytes: SCRATCH_QUEUE_BYTES });
  });

  it("uses the in-memory directory, capped, for a WORK_DIR on disk when memory can spare it", () => {
    const parts = path.join(disk, "eurusd", "merge-parts");
    const c = chooseScratch({ workDirParts: parts, pair: "eurusd", memoryLimitBytes: 12 * GiB, budgetBytes: 3 * GiB, shmDir: shm, pid: 4242 });
    expect(c).toMatchObject({ dir: path.join(shm, "bqx-merge-eurusd-4242"), inMemory: true, maxWaitingBytes: SCRATCH_QUEUE_BYTES });
  });

  it("stays in WORK_DIR when the memory besides the budget is short, or the directory is not in memory", () => {
    const parts = path.join(disk, "eurusd", "merge-parts");
    const tight = chooseScratch({ workDirParts: parts, pair: "eurusd", memoryLimitBytes: 3 * GiB + SCRATCH_HEADROOM_BYTES - 1, budgetBytes: 3 * GiB, shmDir: shm });
    expect(tight).toMatchObject({ dir: parts, inMemory: false, maxWaitingBytes: undefined });
    expect(tight.reason).toMatch(/memory left besides MEMORY_BUDGET/);
    const notShm = chooseScratch({ workDirParts: parts, pair: "eurusd", memoryLimitBytes: 12 * GiB, budgetBytes: 3 * GiB, shmDir: disk });
    expect(notShm).toMatchObject({ dir: parts, inMemory: false });
    expect(notShm.reason).toMatch(/is not an in-memory filesystem/);
  });

  it("sweeps directories of merges whose process is gone, and only those", async () => {
    const dead = spawnSync(process.execPath, ["-e", "0"]).pid!;
    await mkdir(path.join(shm, `bqx-merge-eurusd-${dead}`, "x"), { recursive: true });
    await mkdir(path.join(shm, `bqx-merge-eurusd-${process.pid}`), { recursive: true });
    await mkdir(path.join(shm, "unrelated-1"), { recursive: true });
    expect(sweepStaleScratch(shm)).toEqual([path.join(shm, `bqx-merge-eurusd-${dead}`)]);
    expect((await readdir(shm)).sort()).toEqual([`bqx-merge-eurusd-${process.pid}`, "unrelated-1"]);
  });
});

describe("mergeCheckpoints and its scratch directory", () => {
  let input: Omit<MergeInput, "partsDir" | "outPath">;
  beforeAll(async () => {
    const { target, features } = await generateCheckpoints({ dir: path.join(disk, "ckpt"), rows: 3_000, files: 12, columnsPerFile: 6 });
    input = { target, features: features.map((f, i) => ({ table: `t${i}`, path: f })), columns: 1 + 49 + 12 * 6, budgetBytes: 512 * 1024 ** 2 };
  }, 60_000);

  it("gives the same bytes with two workers and a one-byte queue cap as with one worker, and leaves no scratch", async () => {
    const scratch = haveShm ? path.join(shm, "parts-a") : path.join(disk, "parts-a");
    const one = await mergeCheckpoints({ ...input, partsDir: path.join(disk, "parts-1"), outPath: path.join(disk, "one.parquet"), workers: 1 });
    const capped = await mergeCheckpoints({ ...input, partsDir: scratch, outPath: path.join(disk, "capped.parquet"), workers: 2, maxWaitingBytes: 1 });
    expect(capped.workers).toBe(2);
    expect(capped.rows).toBe(one.rows);
    expect((await readFile(path.join(disk, "capped.parquet"))).equals(await readFile(path.join(disk, "one.parquet")))).toBe(true);
    expect(existsSync(scratch)).toBe(false);
    expect(existsSync(path.join(disk, "parts-1"))).toBe(false);
  }, 60_000);

  it("removes the scratch directory and the partial output when a table fails", async () => {
    const broken = path.join(disk, "broken.parquet");
    await writeFile(broken, "not parquet at all");
    const scratch = haveShm ? path.join(shm, "parts-b") : path.join(disk, "parts-b");
    const features = [...input.features.slice(0, 5), { table: "broken", path: broken }, ...input.features.slice(5)];
    await expect(mergeCheckpoints({ ...input, features, partsDir: scratch, outPath: path.join(disk, "failed.parquet"), workers: 2 })).rejects.toThrow();
    expect(existsSync(scratch)).toBe(false);
    expect((await readdir(disk)).filter((f) => f.startsWith("failed.parquet"))).toEqual([]);
  }, 60_000);
});

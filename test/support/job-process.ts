// The real job as a child process that a test can interrupt: SIGKILL, SIGTERM, SIGTSTP/SIGCONT,
// sent at a point chosen by watching the job's files and log lines (polled every few ms).
import { spawn, type ChildProcess } from "node:child_process";
import { createHash } from "node:crypto";
import { readdirSync } from "node:fs";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { DuckDBInstance } from "@duckdb/node-api";
import { buildSampleWarehouse } from "../../standins/sample/build.ts";
import { sampleTables } from "../../standins/sample/spec.ts";
import { ROOT, runJob, type JobLogLine, type JobRun } from "./run-job.ts";

export interface JobProcess {
  child: ChildProcess;
  /** Everything written to stdout so far (a function property, not a method: passed around unbound). */
  stdout: () => string;
  /** Resolves when the process has exited. */
  done: Promise<JobRun>;
  exited(): boolean;
}

export function startJob(env: Record<string, string>, opts: { timeoutMs?: number } = {}): JobProcess {
  const child = spawn(process.execPath, [path.join(ROOT, "src", "main.ts")], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_FORMAT: "json", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  let exited = false;
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
  const done = new Promise<JobRun>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      exited = true;
      clearTimeout(timer);
      const lines = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as JobLogLine);
      resolve({ code, signal, stdout, stderr, lines });
    });
  });
  return { child, stdout: () => stdout, done, exited: () => exited };
}

/**
 * Polls `reached` every `everyMs` until it holds (true) or the job exits first (false).
 * Synchronous checks only, so the signal follows the observation within a millisecond or so.
 */
export async function waitFor(job: JobProcess, reached: () => boolean, everyMs = 2): Promise<boolean> {
  while (!job.exited()) {
    if (reached()) return true;
    await sleep(everyMs);
  }
  return false;
}

/** Names in a directory, or [] when it does not exist (yet). */
export function namesIn(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

/** Fingerprints of the parts whose two objects are both in a local bucket's staging prefix. */
export function stagedParts(bucket: string, pair: string): string[] {
  const names = namesIn(path.join(bucket, "_staging", pair, "parts"));
  return names.filter((f) => f.endsWith(".chunks") && names.includes(f.replace(/\.chunks$/, ".footer"))).map((f) => f.replace(/\.chunks$/, ""));
}

/** Kill-point predicates over a run's work dir, its (local) bucket and its log. */
export function points(work: string, bucket: string, pair: string, log: () => string = () => "") {
  const parts = path.join(bucket, "_staging", pair, "parts");
  const assembly = path.join(bucket, "_staging", pair, "assembly");
  return {
    /** At least `n` parts staged whole (chunks and footer) in the bucket. */
    staged: (n: number) => () => stagedParts(bucket, pair).length >= n,
    /** A part being written in WORK_DIR, or being copied into the bucket under a staging name. */
    writing: () => namesIn(path.join(work, pair, "parts")).some((f) => f.includes(".tmp-")) || namesIn(parts).some((f) => f.includes(".uploading-")),
    /** The upload stage has begun: the file is being assembled (head and footer, compose) or published. */
    assembling: () => log().includes('"message":"stage upload: started"'),
    /** The file is composed under its temporary name in the bucket, not yet published. */
    composed: () => namesIn(assembly).some((a) => namesIn(path.join(assembly, a)).includes("training.parquet")),
  };
}

/** A sample warehouse for `pair` with `features` of its feature tables (every family kept), quick to build. */
export async function buildSmallSample(file: string, pair: string, rows: number, features: number): Promise<void> {
  const all = sampleTables(pair)
    .filter((t) => t.dataset === "features" && t.hasIntervalTime && (t.forPair === pair || t.forPair === null))
    .map((t) => t.name)
    .sort();
  const kept = new Set(Array.from({ length: features }, (_, i) => all[Math.floor((i * all.length) / features)]!));
  await buildSampleWarehouse({ path: file, pair, rows, only: (t) => (t.dataset === "targets" ? t.name === `targets_${pair}` : kept.has(t.name)) });
}

export const sha256 = async (file: string): Promise<string> =>
  createHash("sha256")
    .update(await readFile(file))
    .digest("hex");

export interface ReferenceRun {
  dir: string;
  warehouse: string;
  /** SHA-256 of the training file an uninterrupted run built. */
  sha: string;
  /** The job's environment for a run under `dir/name`. */
  env: (name: string, extra?: Record<string, string>) => Record<string, string>;
}

/**
 * A small sample warehouse in a fresh temp directory and the hash of the file an uninterrupted run
 * builds from it: what the crash, shutdown and fault tests compare their runs against.
 */
export async function referenceRun(prefix: string, pair: string, features: number): Promise<ReferenceRun> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  const warehouse = path.join(dir, "warehouse.duckdb");
  await buildSmallSample(warehouse, pair, 300, features);
  const env = (name: string, extra: Record<string, string> = {}): Record<string, string> => ({
    TARGET_PAIR: pair,
    WAREHOUSE: warehouse,
    OUTPUT_URI: path.join(dir, name, "bucket"),
    WORK_DIR: path.join(dir, name, "work"),
    MIN_ROWS: "100",
    MIN_COLUMNS: "100",
    MAX_WORKERS: "2",
    ...extra,
  });
  const reference = await runJob(env("reference"));
  if (reference.code !== 0) throw new Error(`the reference run exited ${reference.code}: ${reference.stdout.slice(-2000)}`);
  return { dir, warehouse, env, sha: await sha256(path.join(dir, "reference", "bucket", `training_${pair}.parquet`)) };
}

/** Runs SQL on a warehouse file opened read-write (no job or stand-in may have it open), then checkpoints it. */
export async function onWarehouse(file: string, ...statements: string[]): Promise<void> {
  const instance = await DuckDBInstance.create(file);
  const c = await instance.connect();
  try {
    for (const sql of statements) await c.run(sql);
    await c.run("CHECKPOINT");
  } finally {
    c.closeSync();
    instance.closeSync();
  }
}

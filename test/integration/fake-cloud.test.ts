// The recording stand-ins for gcloud, gsutil and docker (standins/fake-gcloud) against what
// the real gcloud 578 and gsutil 5.37 printed for the same command lines
// (standins/fake-gcloud/recorded/): the same stdout, stderr and exit code for everything the
// operator scripts parse, and gcloud's first error line where they refuse a command line.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatStat } from "../../standins/fake-gcloud/gsutil.ts";
import { fill, firstLine, GCLOUD, GSUTIL, type RecordedRun } from "../../standins/fake-gcloud/recorded.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { ROOT } from "../support/run-job.ts";

const FAKES = path.join(ROOT, "standins", "fake-gcloud");
const NAMES = { job: "bqx-ml-pipeline", project: "bqx-test", region: "us-central1", projectNumber: "123456789012", execution: "bqx-ml-pipeline-x7k2q" };
const EXECUTION_NAME = /\b(bqx-ml-pipeline-[a-z0-9]{5})\b/;

let dir: string;
let gcs: GcsStandIn;

const run = (key: string): RecordedRun => {
  const recorded = GCLOUD.runs[key] ?? GSUTIL.runs[key];
  if (!recorded) throw new Error(`no recorded run "${key}"`);
  return recorded;
};

/** Runs a stand-in (through its shell wrapper, as the scripts do). */
function fake(argv: string[], env: Record<string, string> = {}): Promise<{ exitCode: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(FAKES, argv[0]!), argv.slice(1), {
      env: {
        PATH: `${path.dirname(process.execPath)}:/usr/bin:/bin`,
        HOME: dir,
        FAKE_CLOUD_DIR: path.join(dir, "cloud"),
        FAKE_CLOUD_GCS_ENDPOINT: gcs.endpoint,
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (exitCode) => resolve({ exitCode, stdout, stderr }));
  });
}

/** The emulated cloud holding one job (the recorded one, with the given shape) and maybe one execution. */
async function seed(job: { parallelism: number; taskCount: number }, execution?: string): Promise<void> {
  const cloud = path.join(dir, "cloud");
  await rm(cloud, { recursive: true, force: true });
  await mkdir(path.join(cloud, "executions"), { recursive: true });
  const resource = structuredClone(GCLOUD.resources.job) as { spec: { template: { spec: Record<string, unknown> } } };
  Object.assign(resource.spec.template.spec, job);
  await writeFile(path.join(cloud, "jobs.json"), JSON.stringify({ [NAMES.job]: resource }));
  if (execution) await writeFile(path.join(cloud, "executions", `${NAMES.execution}.json`), JSON.stringify(GCLOUD.resources[execution]));
}

async function ended(name: string): Promise<void> {
  const file = path.join(dir, "cloud", "executions", `${name}.json`);
  for (let i = 0; i < 300; i += 1) {
    if (existsSync(file) && JSON.parse(await readFile(file, "utf8")).status?.completionTime) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${name} did not end`);
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "fake-cloud-"));
  gcs = await startGcsStandIn({ buckets: ["bqx-test-output"] });
});

afterAll(async () => {
  await gcs?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("the gcloud stand-in", () => {
  it("answers `run jobs describe --format value(...)` over a v1 Job as gcloud did: the image at its v1 path, an empty line for a path v1 lacks", async () => {
    await seed({ parallelism: 1, taskCount: 1 });
    for (const key of [
      "describe: image (v1 path)",
      "describe: image (v2 path, absent from v1)",
      "describe: parallelism and task count",
      "describe: no such job",
    ]) {
      const recorded = run(key);
      const got = await fake(recorded.argv);
      expect(got, key).toEqual({ exitCode: recorded.exitCode, stdout: recorded.stdout, stderr: fill(recorded.stderr, { ...NAMES, job: recorded.argv[4]! }) });
    }
  });

  it("answers `run jobs executions describe` with the status line gcloud printed at each stage of an execution, and fails as gcloud does without network", async () => {
    for (const phase of ["created", "running", "succeeded", "failed"]) {
      await seed({ parallelism: 3, taskCount: 3 }, `execution (${phase})`);
      const recorded = run(`executions describe: ${phase}`);
      expect(await fake(recorded.argv), phase).toEqual({ exitCode: 0, stdout: recorded.stdout, stderr: "" });
    }
    const missing = run("executions describe: no such execution");
    expect(await fake(missing.argv)).toEqual({ exitCode: 1, stdout: "", stderr: fill(missing.stderr, { ...NAMES, execution: missing.argv[5]! }) });
    const offline = run("executions describe: no network");
    expect(await fake(offline.argv, { FAKE_CLOUD_DESCRIBE_FAILURES: "always" })).toEqual({ exitCode: 1, stdout: "", stderr: fill(offline.stderr, NAMES) });
  });

  it("refuses what gcloud's parser refuses, with gcloud's first error line: unknown flags, --parallelism on execute, --wait with --async, out-of-range and missing values", async () => {
    await seed({ parallelism: 1, taskCount: 1 });
    for (const key of [
      "update: unknown flag",
      "execute: --parallelism is not an execution override",
      "execute --wait --async",
      "execute: --tasks 0",
      "update: --parallelism not a number",
      "execute: --tasks without a value",
    ]) {
      const recorded = run(key);
      const got = await fake(recorded.argv);
      expect({ exitCode: got.exitCode, stdout: got.stdout, stderr: firstLine(got.stderr) }, key).toEqual({
        exitCode: 2,
        stdout: "",
        stderr: firstLine(recorded.stderr),
      });
    }
  });

  it("refuses parallelism above the task count as Cloud Run does: on the job, and for an execution of fewer tasks than the job's parallelism", async () => {
    await seed({ parallelism: 1, taskCount: 1 });
    for (const key of ["update: parallelism above the task count", "update: tasks and parallelism", "execute: fewer tasks than the job's parallelism"]) {
      const recorded = run(key);
      expect(await fake(recorded.argv), key).toEqual({ exitCode: recorded.exitCode, stdout: recorded.stdout, stderr: fill(recorded.stderr, NAMES) });
    }
  });

  it("`execute --async` prints the name and returns while the execution runs on; `execute --wait` that fails exits 1 naming it on stderr only", async () => {
    await seed({ parallelism: 3, taskCount: 3 });
    const crash = { FAKE_CLOUD_FAIL_TASKS: "0,1,2" };
    const started = run("execute --async");
    const async = await fake(started.argv, crash);
    const name = EXECUTION_NAME.exec(async.stdout)?.[1];
    expect(async).toEqual({ exitCode: 0, stdout: `${name}\n`, stderr: fill(started.stderr, { ...NAMES, execution: name! }) });
    await ended(name!);

    const failing = run("execute --wait: execution fails");
    const failed = await fake(failing.argv, crash);
    const failedName = EXECUTION_NAME.exec(failed.stderr)?.[1];
    expect(failed).toEqual({ exitCode: 1, stdout: "", stderr: fill(failing.stderr, { ...NAMES, execution: failedName! }) });

    const succeeding = run("execute --wait: execution succeeds");
    const succeeded = await fake(succeeding.argv, { FAKE_CLOUD_GHOST: "1" });
    const succeededName = EXECUTION_NAME.exec(succeeded.stdout)?.[1];
    expect(succeeded).toEqual({ exitCode: 0, stdout: `${succeededName}\n`, stderr: fill(succeeding.stderr, { ...NAMES, execution: succeededName! }) });
  });

  it("reports its version as gcloud 578 does", async () => {
    for (const key of ["version", "version --format json", "version --format value"]) {
      const recorded = run(key);
      expect(await fake(recorded.argv), key).toEqual({ exitCode: 0, stdout: recorded.stdout, stderr: "" });
    }
  });
});

describe("the gsutil stand-in", () => {
  const url = "gs://bqx-test-output/runs/training_eurusd.parquet";

  it("prints an object's stat lines exactly as gsutil does: aligned labels, the metadata block indented under them", () => {
    expect(formatStat(url, GSUTIL.object as unknown as Parameters<typeof formatStat>[1])).toBe(run("gsutil stat (found)").stdout);
  });

  it("fails a missing object, a forbidden one (403) and an anonymous caller (401) as gsutil does, with -q and without", async () => {
    for (const [mode, env] of [
      ["missing", {}],
      ["denied", { FAKE_CLOUD_GSUTIL_ACCESS: "denied" }],
      ["anonymous", { FAKE_CLOUD_GSUTIL_ACCESS: "anonymous" }],
    ] as const) {
      for (const prefix of ["gsutil stat", "gsutil -q stat"]) {
        const recorded = run(`${prefix} (${mode})`);
        expect(await fake(recorded.argv, env), `${prefix} (${mode})`).toEqual({
          exitCode: recorded.exitCode,
          stdout: recorded.stdout,
          stderr: recorded.stderr,
        });
      }
    }
  });
});

describe("the docker stand-in", () => {
  it("records the platform an image is built for, and refuses a flag it does not know", async () => {
    await seed({ parallelism: 1, taskCount: 1 });
    const built = await fake(["docker", "build", "--platform", "linux/amd64", "--file", path.join(ROOT, "Dockerfile.cloudrun"), "--tag", "img:v1", ROOT]);
    expect(built.exitCode, built.stderr).toBe(0);
    expect(JSON.parse(await readFile(path.join(dir, "cloud", "built.json"), "utf8"))).toEqual([{ tag: "img:v1", platform: "linux/amd64" }]);
    expect(await fake(["docker", "build", "--squash", "--tag", "img:v2", ROOT])).toEqual({
      exitCode: 125,
      stdout: "",
      stderr: "unknown flag: --squash\nSee 'docker build --help'.\n",
    });
  });
});

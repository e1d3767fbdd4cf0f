// The operator scripts in scripts/operator/, run by bash with recording stand-ins for gcloud, gsutil and
// docker first on PATH (standins/fake-gcloud), as strict as the real tools and answering
// with what gcloud 578 and gsutil 5.37 print. The stand-in gcloud runs an execution's tasks as
// Cloud Run would (the real entrypoint, one process per task, CLOUD_RUN_* set), here on the
// embedded warehouse and writing to the Cloud Storage stand-in, so what the scripts then
// validate is a real training file in a (stand-in) bucket.
import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PAIRS } from "../../src/constants.ts";
import { startGcsStandIn, type GcsStandIn } from "../../standins/gcs.ts";
import { ROOT } from "../support/run-job.ts";
import { TINY_VALIDATION_ENV, buildTinyWarehouse, type TinyPair } from "../../standins/tiny-warehouse.ts";

const OUTPUT_BUCKET = "bqx-test-output";
const IMAGE = "us-central1-docker.pkg.dev/bqx-test/bqx/bqx-training-builder";
const JOB = "bqx-ml-pipeline";
/** In the warehouse; nzdusd is not, so its execution fails. */
const BUILT = ["eurusd", "gbpusd", "usdjpy", "audusd"];

interface Call {
  tool: string;
  argv: string[];
  env: Record<string, string>;
}
interface Execution {
  execution: string;
  tasks: number;
  parallelismPeak?: number;
  ran: boolean;
  results?: Array<{ index: number; attempts: Array<{ attempt: number; code: number; argv: string[]; env: Record<string, string> }> }>;
}
interface ScriptRun {
  code: number | null;
  stdout: string;
  stderr: string;
  calls: Call[];
  executions: Execution[];
}

let dir: string;
let gcs: GcsStandIn;
let tiny: Record<string, TinyPair>;
let baseEnv: Record<string, string>;
let firstDeploy: ScriptRun;

const cloudDir = () => path.join(dir, "cloud");
const readLines = async <T>(file: string): Promise<T[]> =>
  existsSync(file)
    ? (await readFile(file, "utf8"))
        .split("\n")
        .filter(Boolean)
        .map((l) => JSON.parse(l) as T)
    : [];

/** The test's environment with `env` on top; a key set to undefined is removed. */
const scriptEnv = (env: Record<string, string | undefined>) =>
  Object.fromEntries(Object.entries({ ...baseEnv, ...env }).filter((e): e is [string, string] => e[1] !== undefined));

/**
 * Runs a script with the stand-ins first on PATH; returns what it printed and what it called.
 * `whileRunning` gets the script's process while it runs (it leads its own process group, as a
 * script started from a terminal does, so a signal can reach the group like Ctrl-C).
 */
async function runScript(
  script: string,
  args: string[] = [],
  env: Record<string, string | undefined> = {},
  command: string[] = ["bash", path.join(ROOT, "scripts", "operator", script), ...args],
  whileRunning?: (pid: number) => Promise<void>,
): Promise<ScriptRun> {
  const callsBefore = (await readLines<Call>(path.join(cloudDir(), "calls.jsonl"))).length;
  const executionsBefore = (await readLines<Execution>(path.join(cloudDir(), "executions.jsonl"))).length;
  const { code, stdout, stderr } = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve, reject) => {
    const child = spawn(command[0]!, command.slice(1), {
      cwd: ROOT,
      env: scriptEnv(env),
      stdio: ["ignore", "pipe", "pipe"],
      detached: whileRunning !== undefined,
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (c) => resolve({ code: c, stdout: out, stderr: err }));
    if (whileRunning) whileRunning(child.pid!).catch(reject);
  });
  return {
    code,
    stdout,
    stderr,
    calls: (await readLines<Call>(path.join(cloudDir(), "calls.jsonl"))).slice(callsBefore),
    executions: (await readLines<Execution>(path.join(cloudDir(), "executions.jsonl"))).slice(executionsBefore),
  };
}

const gcloudCalls = (run: ScriptRun, ...command: string[]) => run.calls.filter((c) => c.tool === "gcloud" && command.every((w, i) => c.argv[i] === w));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** The v1 Execution the stand-in keeps for `name`, once it has ended (it may run on after a script stops following it). */
async function endedExecution(name: string): Promise<{ status: { completionTime?: string; succeededCount?: number; failedCount?: number } }> {
  for (let i = 0; i < 600; i += 1) {
    const file = path.join(cloudDir(), "executions", `${name}.json`);
    const execution = existsSync(file) ? JSON.parse(await readFile(file, "utf8")) : undefined;
    if (execution?.status?.completionTime) return execution;
    await sleep(100);
  }
  throw new Error(`execution ${name} did not end within 60 s`);
}
/** The execution name in a script's "execution NAME ..." lines. */
const executionNamed = (text: string) => /execution (bqx-ml-pipeline-[a-z0-9]{5})\b/.exec(text)?.[1];
const flag = (call: Call, name: string) => {
  const i = call.argv.indexOf(`--${name}`);
  return i >= 0 ? call.argv[i + 1] : undefined;
};
/** The "pair  result ..." rows of a summary table. */
const tableRows = (stdout: string) =>
  Object.fromEntries(
    stdout
      .slice(stdout.lastIndexOf("== summary"))
      .split("\n")
      .filter((l) => /^[a-z]{6} /.test(l))
      .map((l) => [l.slice(0, 6), l.slice(6).trim()]),
  );

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "operator-scripts-"));
  const warehouse = path.join(dir, "warehouse.duckdb");
  tiny = await buildTinyWarehouse({ path: warehouse, pairs: BUILT });
  gcs = await startGcsStandIn({ buckets: [OUTPUT_BUCKET] });
  baseEnv = {
    PATH: `${path.join(ROOT, "standins", "fake-gcloud")}:${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    HOME: dir,
    TMPDIR: dir,
    // scripts/operator/settings.env, overridden the way an operator would for another project.
    GCP_PROJECT: "bqx-test",
    REGION: "us-central1",
    JOB_NAME: JOB,
    IMAGE,
    SERVICE_ACCOUNT: "bqx-runner@bqx-test.iam.gserviceaccount.com",
    OUTPUT_URI: `gs://${OUTPUT_BUCKET}/runs`,
    PARALLELISM: "2",
    MIN_TRAINING_BYTES: "1000",
    ...TINY_VALIDATION_ENV,
    GCS_ENDPOINT: gcs.endpoint,
    // The scripts look at a running execution this often (30 s in production).
    POLL_SECONDS: "0.2",
    // The emulated platform: where the stand-in gcloud runs tasks, and the local world it adds;
    // where the stand-in gsutil finds objects (gsutil has no endpoint variable of its own).
    FAKE_CLOUD_DIR: cloudDir(),
    FAKE_CLOUD_GCS_ENDPOINT: gcs.endpoint,
    FAKE_CLOUD_WORKDIR: ROOT,
    FAKE_CLOUD_ENTRYPOINT: JSON.stringify(["node", "src/main.ts"]),
    FAKE_CLOUD_TASK_ENV: JSON.stringify({
      BACKEND: "local",
      WAREHOUSE: warehouse,
      GCS_ENDPOINT: gcs.endpoint,
      WORK_DIR: path.join(dir, "work"),
      MAX_WORKERS: "1",
      ...TINY_VALIDATION_ENV,
    }),
  };
  firstDeploy = await runScript("deploy.sh", ["--tag", "v1"]);
}, 120_000);

afterAll(async () => {
  await gcs?.close();
  await rm(dir, { recursive: true, force: true });
});

describe("scripts/operator/settings.env", () => {
  it("lists the same 28 pairs as the job (src/constants.ts)", async () => {
    const run = await new Promise<string>((resolve) => {
      const child = spawn("bash", ["-c", `source scripts/operator/settings.env && echo "$ALL_PAIRS"`], { cwd: ROOT, env: { PATH: baseEnv.PATH! } });
      let out = "";
      child.stdout.on("data", (d: Buffer) => (out += d.toString()));
      child.on("close", () => resolve(out.trim()));
    });
    expect(run.split(" ")).toEqual([...PAIRS]);
  });
});

describe("scripts/operator/deploy.sh", () => {
  it("builds IMAGE:TAG for linux/amd64, pushes it, then creates the job with the settings' resources, one task at a time and no pair", async () => {
    expect(firstDeploy.code, firstDeploy.stderr).toBe(0);
    const docker = firstDeploy.calls.filter((c) => c.tool === "docker").map((c) => c.argv[0]);
    expect(docker).toEqual(["build", "push"]);
    expect(firstDeploy.calls.find((c) => c.tool === "docker" && c.argv[0] === "build")!.argv).toEqual([
      "build",
      "--platform",
      "linux/amd64",
      "--file",
      path.join(ROOT, "Dockerfile.cloudrun"),
      "--tag",
      `${IMAGE}:v1`,
      ROOT,
    ]);
    expect(JSON.parse(await readFile(path.join(cloudDir(), "built.json"), "utf8"))).toEqual([{ tag: `${IMAGE}:v1`, platform: "linux/amd64" }]);
    const [create] = gcloudCalls(firstDeploy, "run", "jobs", "create");
    expect(create).toBeDefined();
    expect(create!.argv[3]).toBe(JOB);
    expect({
      image: flag(create!, "image"),
      cpu: flag(create!, "cpu"),
      memory: flag(create!, "memory"),
      timeout: flag(create!, "task-timeout"),
      retries: flag(create!, "max-retries"),
      sa: flag(create!, "service-account"),
      region: flag(create!, "region"),
      project: flag(create!, "project"),
    }).toEqual({
      image: `${IMAGE}:v1`,
      cpu: "4",
      memory: "12Gi",
      timeout: "7200s",
      retries: "1",
      sa: "bqx-runner@bqx-test.iam.gserviceaccount.com",
      region: "us-central1",
      project: "bqx-test",
    });
    // Parallelism never above the task count: Cloud Run refuses such a job.
    expect({ tasks: flag(create!, "tasks"), parallelism: flag(create!, "parallelism") }).toEqual({ tasks: "1", parallelism: "1" });
    expect(flag(create!, "set-env-vars")).toBe(`BACKEND=gcp,GCP_PROJECT=bqx-test,OUTPUT_URI=gs://${OUTPUT_BUCKET}/runs,LOG_FORMAT=json`);
    expect(create!.argv.join(" ")).not.toMatch(/TARGET_PAIR|PAIRS=/);
    expect(firstDeploy.stdout).toMatch(`deployed: job ${JOB} in us-central1 runs ${IMAGE}:v1`);
  });

  it("updates the existing job on the next deploy and prints how to roll back; --no-build --tag rolls back without building", async () => {
    const second = await runScript("deploy.sh", ["--tag", "v2"]);
    expect(second.code, second.stderr).toBe(0);
    // The image is read where a v1 Job has it; gcloud prints an empty line for any other path.
    const [describe] = gcloudCalls(second, "run", "jobs", "describe");
    expect(flag(describe!, "format")).toBe("value(spec.template.spec.template.spec.containers[0].image)");
    expect(gcloudCalls(second, "run", "jobs", "create")).toEqual([]);
    expect(gcloudCalls(second, "run", "jobs", "update").map((c) => flag(c, "image"))).toEqual([`${IMAGE}:v2`]);
    expect(second.stdout).toContain(`== updating job ${JOB} (was ${IMAGE}:v1)`);
    expect(second.stdout).toContain("roll back with: scripts/operator/deploy.sh --no-build --tag v1");

    const rollback = await runScript("deploy.sh", ["--no-build", "--tag", "v1"]);
    expect(rollback.code, rollback.stderr).toBe(0);
    expect(rollback.calls.filter((c) => c.tool === "docker")).toEqual([]);
    expect(gcloudCalls(rollback, "run", "jobs", "update").map((c) => flag(c, "image"))).toEqual([`${IMAGE}:v1`]);
    expect(rollback.stdout).toContain("roll back with: scripts/operator/deploy.sh --no-build --tag v2");
    const jobs = JSON.parse(await readFile(path.join(cloudDir(), "jobs.json"), "utf8"));
    expect(jobs[JOB].spec.template.spec.template.spec.containers[0].image).toBe(`${IMAGE}:v1`);
  });

  it("refuses to roll back to a tag the registry does not have, naming it and how to list tags", async () => {
    const run = await runScript("deploy.sh", ["--no-build", "--tag", "v0"]);
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`ERROR: no image ${IMAGE}:v0: list the tags with 'gcloud artifacts docker tags list ${IMAGE} --project bqx-test'`);
    expect(gcloudCalls(run, "run", "jobs", "update")).toEqual([]);
  });

  it("adds the settings' extra job variables and flags (an in-memory volume), and refuses a pair among them", async () => {
    const extra = {
      JOB_EXTRA_ENV_VARS: "WORK_DIR=/work,MEMORY_BUDGET=3GiB",
      JOB_EXTRA_FLAGS: "--add-volume name=work,type=in-memory,size-limit=8Gi --add-volume-mount volume=work,mount-path=/work",
    };
    const run = await runScript("deploy.sh", ["--no-build", "--tag", "v1"], extra);
    expect(run.code, run.stderr).toBe(0);
    const [update] = gcloudCalls(run, "run", "jobs", "update");
    expect(flag(update!, "set-env-vars")).toMatch(/,WORK_DIR=\/work,MEMORY_BUDGET=3GiB$/);
    expect(update!.argv.slice(-4)).toEqual(["--add-volume", "name=work,type=in-memory,size-limit=8Gi", "--add-volume-mount", "volume=work,mount-path=/work"]);

    const refused = await runScript("deploy.sh", ["--no-build", "--tag", "v1"], { JOB_EXTRA_ENV_VARS: "TARGET_PAIR=eurusd" });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain("JOB_EXTRA_ENV_VARS sets TARGET_PAIR or PAIRS: name the pairs per execution instead");
    expect(gcloudCalls(refused, "run", "jobs", "update")).toEqual([]);
  });

  it("builds with Cloud Build when asked, with BuildKit on, for linux/amd64", async () => {
    const run = await runScript("deploy.sh", ["--tag", "v3", "--builder", "cloud-build"]);
    expect(run.code, run.stderr).toBe(0);
    const [submit] = gcloudCalls(run, "builds", "submit");
    expect(submit!.argv[2]).toBe(ROOT);
    const config = await readFile(path.join(cloudDir(), "last-build-config.yaml"), "utf8");
    expect(config).toContain('env: ["DOCKER_BUILDKIT=1"]');
    expect(config).toContain(`args: ["build", "--platform", "linux/amd64", "--file", "Dockerfile.cloudrun", "--tag", "${IMAGE}:v3", "."]`);
    expect(run.calls.filter((c) => c.tool === "docker")).toEqual([]);
    expect(gcloudCalls(run, "run", "jobs", "update").map((c) => flag(c, "image"))).toEqual([`${IMAGE}:v3`]);
  });

  it("refuses a gcloud older than 453.0.0 (no execution overrides on `gcloud run jobs execute`) before doing anything", async () => {
    for (const [script, args] of [
      ["deploy.sh", ["--tag", "v9"]],
      ["execute_production_26pairs.sh", ["--pairs", "eurusd"]],
      ["execute_all_pairs_parallel.sh", ["--pairs", "eurusd"]],
    ] as const) {
      const run = await runScript(script, [...args], { FAKE_CLOUD_GCLOUD_VERSION: "452.0.0" });
      expect(run.code, script).toBe(1);
      expect(run.stderr).toContain("ERROR: gcloud 452.0.0 is older than 453.0.0, which these scripts need");
      expect(run.calls.map((c) => `${c.tool} ${c.argv.join(" ")}`)).toEqual([`gcloud version --format value("Google Cloud SDK")`]);
    }
  });
});

describe("scripts/operator/execute_production_26pairs.sh", () => {
  it("starts one 1-task execution per pair with TARGET_PAIR as an env var, follows it to its end, validates each file, and ends with a table", async () => {
    const run = await runScript("execute_production_26pairs.sh", ["--pairs", "eurusd gbpusd"]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    const executes = gcloudCalls(run, "run", "jobs", "execute");
    expect(executes.map((c) => c.argv.slice(3))).toEqual(
      ["eurusd", "gbpusd"].map((p) => [
        JOB,
        "--region",
        "us-central1",
        "--project",
        "bqx-test",
        "--tasks",
        "1",
        "--update-env-vars",
        `TARGET_PAIR=${p}`,
        "--async",
        "--format",
        "value(metadata.name)",
      ]),
    );
    // Followed by its v1 status until it had a completionTime, then validated as its own.
    const describes = gcloudCalls(run, "run", "jobs", "executions", "describe");
    expect(describes.map((c) => c.argv[4])).toEqual(expect.arrayContaining(run.executions.map((e) => e.execution)));
    expect(flag(describes[0]!, "format")).toBe("value(status.completionTime,status.succeededCount,status.failedCount)");
    expect(run.calls.filter((c) => c.tool === "gsutil").length).toBe(2);
    // The task saw the pair in its environment only: no argument reached the job.
    for (const [i, pair] of ["eurusd", "gbpusd"].entries()) {
      const attempt = run.executions[i]!.results![0]!.attempts[0]!;
      expect(attempt.env.TARGET_PAIR).toBe(pair);
      expect(attempt.argv).toEqual(["node", "src/main.ts"]);
      expect(gcs.getObject(OUTPUT_BUCKET, `runs/training_${pair}.parquet`)?.metadata.rows).toBe(String(tiny[pair]!.trainingRows));
    }
    expect(tableRows(run.stdout)).toEqual({ eurusd: expect.stringMatching(/^ok /), gbpusd: expect.stringMatching(/^ok /) });
    for (const [i, pair] of ["eurusd", "gbpusd"].entries()) {
      expect(tableRows(run.stdout)[pair]).toMatch(new RegExp(`${run.executions[i]!.execution}$`));
      expect(run.stdout).toContain(`ok    execution: built by execution ${run.executions[i]!.execution}`);
    }
    expect(run.stdout).toContain("all 2 pair(s) built and validated");
  });

  it("stops at the first failed execution, lists the rest as not run, and says how to resume", async () => {
    const run = await runScript("execute_production_26pairs.sh", ["--pairs", "usdjpy nzdusd audusd"]);
    expect(run.code).toBe(1);
    expect(gcloudCalls(run, "run", "jobs", "execute").map((c) => flag(c, "update-env-vars"))).toEqual(["TARGET_PAIR=usdjpy", "TARGET_PAIR=nzdusd"]);
    expect(tableRows(run.stdout)).toEqual({
      usdjpy: expect.stringMatching(/^ok /),
      nzdusd: expect.stringMatching(/^execution failed /),
      audusd: expect.stringMatching(/^not run /),
    });
    // The failed execution keeps its name (gcloud's --wait prints it on stderr only, and exits 1).
    const failed = run.executions[1]!.execution;
    expect(tableRows(run.stdout).nzdusd).toMatch(new RegExp(`${failed}$`));
    expect(run.stdout).toContain(`execution ${failed} failed: 0 of 1 task(s) succeeded, 1 failed`);
    expect(run.stderr).toContain(`details: gcloud run jobs executions describe ${failed} --region us-central1 --project bqx-test`);
    expect(run.stderr).toContain('resume with: scripts/operator/execute_production_26pairs.sh --from nzdusd --pairs "usdjpy nzdusd audusd"');
    // The job retried the task once (MAX_RETRIES=1) and failed in discovery both times.
    expect(run.executions[1]!.results![0]!.attempts.map((a) => a.code)).toEqual([1, 1]);
  });

  it("--from resumes at the named pair", async () => {
    const run = await runScript("execute_production_26pairs.sh", ["--pairs", "usdjpy nzdusd audusd", "--from", "audusd"]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(gcloudCalls(run, "run", "jobs", "execute").map((c) => flag(c, "update-env-vars"))).toEqual(["TARGET_PAIR=audusd"]);
    expect(tableRows(run.stdout)).toEqual({ audusd: expect.stringMatching(/^ok /) });
  });

  it("fails a pair whose execution reports success without producing the file (a ghost success)", async () => {
    const run = await runScript("execute_production_26pairs.sh", ["--pairs", "cadjpy"], { FAKE_CLOUD_GHOST: "1" });
    expect(run.code).toBe(1);
    expect(run.stderr).toContain(`ERROR: gs://${OUTPUT_BUCKET}/runs/training_cadjpy.parquet does not exist`);
    expect(tableRows(run.stdout)).toEqual({ cadjpy: expect.stringMatching(/^validation failed /) });
  });

  it("when the execution can no longer be described, says it keeps running, how to watch it and to validate it once it ends, and gives no command that would start it twice (exit 4)", async () => {
    const run = await runScript("execute_production_26pairs.sh", ["--pairs", "usdjpy audusd"], { FAKE_CLOUD_DESCRIBE_FAILURES: "always" });
    expect(run.code).toBe(4);
    const name = executionNamed(run.stdout)!;
    expect(run.stderr).toContain(`could not describe ${name} (4 of 5 attempts)`);
    expect(run.stderr).toContain(`ERROR: usdjpy: could not describe execution ${name} 5 times in a row`);
    expect(run.stderr).toContain(`execution ${name} keeps running in the cloud`);
    expect(run.stderr).toContain(`watch it: gcloud run jobs executions describe ${name} --region us-central1 --project bqx-test`);
    expect(run.stderr).toContain(`validate usdjpy: scripts/operator/validate_gcs_training_file.sh usdjpy --execution ${name}`);
    expect(run.stderr).toContain('then go on with: scripts/operator/execute_production_26pairs.sh --from audusd --pairs "usdjpy audusd"');
    expect(run.stderr).not.toContain("--from usdjpy");
    expect(gcloudCalls(run, "run", "jobs", "execute")).toHaveLength(1);
    expect(tableRows(run.stdout)).toEqual({
      usdjpy: expect.stringMatching(new RegExp(`^not followed .*${name}$`)),
      audusd: expect.stringMatching(/^not run /),
    });
    // It ran on in the cloud and built usdjpy.
    expect((await endedExecution(name)).status.succeededCount).toBe(1);
    expect(gcs.getObject(OUTPUT_BUCKET, "runs/training_usdjpy.parquet")!.metadata.execution).toBe(name);
  });

  it("on Ctrl-C while waiting, says the execution keeps running in the cloud and how to follow it, and exits 130; the execution still builds its pair", async () => {
    const describes = async () =>
      (await readLines<Call>(path.join(cloudDir(), "calls.jsonl"))).filter((c) => c.argv.slice(0, 4).join(" ") === "run jobs executions describe").length;
    const run = await runScript("execute_production_26pairs.sh", ["--pairs", "audusd"], {}, undefined, async (pid) => {
      const before = await describes();
      for (let i = 0; i < 300 && (await describes()) === before; i += 1) await sleep(100);
      process.kill(-pid, "SIGINT"); // what Ctrl-C in a terminal does: the whole foreground group
    });
    expect(run.code).toBe(130);
    const name = executionNamed(run.stdout)!;
    expect(run.stderr).toContain("interrupted while waiting for audusd.");
    expect(run.stderr).toContain(`execution ${name} keeps running in the cloud: this script stopped following it, the execution did not stop.`);
    expect(run.stderr).toContain(`watch it: gcloud run jobs executions describe ${name} --region us-central1 --project bqx-test`);
    expect(run.stderr).toContain(`scripts/operator/validate_gcs_training_file.sh audusd --execution ${name}`);
    expect(run.stderr).not.toMatch(/execute_production_26pairs\.sh --(from|pairs) "?audusd/);
    expect((await endedExecution(name)).status.succeededCount).toBe(1);
    expect(gcs.getObject(OUTPUT_BUCKET, "runs/training_audusd.parquet")!.metadata.execution).toBe(name);
  });

  it("refuses an unknown pair and a pair passed as a bare argument, before calling gcloud", async () => {
    const unknown = await runScript("execute_production_26pairs.sh", ["--pairs", "eurusd xxxyyy"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown pair 'xxxyyy'");
    const bare = await runScript("execute_production_26pairs.sh", ["eurusd"]);
    expect(bare.code).toBe(2);
    expect(bare.stderr).toContain("unknown argument 'eurusd' (the pair goes in --pairs, never as an argument to the job)");
    expect([...unknown.calls, ...bare.calls]).toEqual([]);
  });
});

// Uses the files the executions above left in the bucket (eurusd, gbpusd, audusd).
describe("scripts/operator/validate_gcs_training_file.sh", () => {
  it("passes a good file after reading only its footer and manifest, never the whole object", async () => {
    const before = gcs.requests.length;
    const run = await runScript("validate_gcs_training_file.sh", ["eurusd"]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toMatch(/^ok {4}validation: rows >= 20, columns >= 50, 49\/49 targets/m);
    expect(run.stdout).toMatch(/^valid: gs:\/\/bqx-test-output\/runs\/training_eurusd\.parquet \(read .* of .*: footer and manifest only\)$/m);
    const size = gcs.getObject(OUTPUT_BUCKET, "runs/training_eurusd.parquet")!.size;
    const media = gcs.requests.slice(before).filter((r) => r.kind === "media" && r.path.endsWith("training_eurusd.parquet"));
    expect(media.length).toBe(2);
    for (const r of media) expect(r.range).toMatch(/^bytes=\d+-\d+$/);
    const read = media.reduce((n, r) => {
      const [a, b] = r.range!.slice(6).split("-").map(Number);
      return n + (b! - a! + 1);
    }, 0);
    expect(read).toBeLessThan(size);
    expect(run.calls.map((c) => `${c.tool} ${c.argv.join(" ")}`)).toEqual([`gsutil stat gs://${OUTPUT_BUCKET}/runs/training_eurusd.parquet`]);
  });

  it("tells an object the caller may not read from a missing one: exit 3 naming roles/storage.objectViewer (403) or gcloud auth login (401), exit 1 only when it is missing", async () => {
    const uri = `gs://${OUTPUT_BUCKET}/runs/training_eurusd.parquet`;
    const denied = await runScript("validate_gcs_training_file.sh", ["eurusd"], { FAKE_CLOUD_GSUTIL_ACCESS: "denied" });
    expect(denied.code).toBe(3);
    expect(denied.stderr).toContain(
      `ERROR: ${uri} not checked: the account gsutil uses may not read it (403). Grant it roles/storage.objectViewer on gs://${OUTPUT_BUCKET}`,
    );
    expect(denied.stderr).not.toMatch(/does not exist|rebuild/i);

    const anonymous = await runScript("validate_gcs_training_file.sh", ["eurusd"], { FAKE_CLOUD_GSUTIL_ACCESS: "anonymous" });
    expect(anonymous.code).toBe(3);
    expect(anonymous.stderr).toContain(`ERROR: ${uri} not checked: gsutil has no valid credentials (401): run gcloud auth login`);

    const missing = await runScript("validate_gcs_training_file.sh", ["nzdusd"]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`ERROR: gs://${OUTPUT_BUCKET}/runs/training_nzdusd.parquet does not exist`);
    expect(missing.stderr).toContain("Rebuild it: scripts/operator/execute_production_26pairs.sh --pairs nzdusd");
  });

  it("without Application Default Credentials says to run gcloud auth application-default login (exit 3), and never that the file must be rebuilt", async () => {
    // A workstation after `gcloud auth login` only: gsutil reads the object, but there are no
    // ADC, no key file and no metadata server, and Cloud Storage is Google's (no stand-in).
    const home = await mkdtemp(path.join(dir, "home-without-adc-"));
    const noAdc = { HOME: home, GCS_ENDPOINT: undefined, GOOGLE_APPLICATION_CREDENTIALS: undefined, METADATA_SERVER_DETECTION: "none" };
    const run = await runScript("validate_gcs_training_file.sh", ["eurusd"], noAdc);
    expect(run.code).toBe(3);
    expect(run.stderr).toContain(
      "validate-object: not checked: no usable Application Default Credentials on this machine (Could not load the default credentials.",
    );
    expect(run.stderr).toContain(
      "`gcloud auth login` does not set them: run `gcloud auth application-default login` (or point GOOGLE_APPLICATION_CREDENTIALS at a service-account key file)",
    );
    expect(run.stderr).toContain("nothing is known to be wrong with the file");
    expect(run.stderr).not.toMatch(/rebuild/i);
    // Both execute scripts find out before starting anything, not after a two-hour execution.
    for (const script of ["execute_production_26pairs.sh", "execute_all_pairs_parallel.sh"]) {
      const execute = await runScript(script, ["--pairs", "eurusd"], noAdc);
      expect(execute.code, script).toBe(3);
      expect(execute.stderr).toContain("run `gcloud auth application-default login`");
      expect(execute.calls.filter((c) => c.tool === "gcloud").map((c) => c.argv[0])).toEqual(["version"]);
    }
  });

  it("fails a file replaced after its manifest was written, naming the mismatch", async () => {
    // gbpusd's bytes and metadata under audusd's name: the metadata pair and the manifest both disagree.
    const stored = gcs.getObject(OUTPUT_BUCKET, "runs/training_gbpusd.parquet")!;
    await gcs.putObject(OUTPUT_BUCKET, "runs/training_audusd.parquet", await gcs.readObject(OUTPUT_BUCKET, "runs/training_gbpusd.parquet"), {
      ...stored.metadata,
      pair: "audusd",
    });
    const run = await runScript("validate_gcs_training_file.sh", ["audusd"]);
    expect(run.code).toBe(1);
    expect(run.stdout).toMatch(/^FAIL {2}manifest: training_audusd\.manifest\.json does not describe this object: bytes \d+ \(object: \d+\); crc32c/m);
    expect(run.stdout).toMatch(/^FAIL {2}metadata: .*footer bqx\.pair="gbpusd"/m);
    expect(run.stderr).toContain("failed validation (above); rebuild it: scripts/operator/execute_production_26pairs.sh --pairs audusd");
  });

  it("fails a file below MIN_TRAINING_BYTES before reading it", async () => {
    const run = await runScript("validate_gcs_training_file.sh", ["eurusd"], { MIN_TRAINING_BYTES: String(10 * 1024 ** 3) });
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/training_eurusd\.parquet is \d+ bytes, below MIN_TRAINING_BYTES=10737418240/);
  });

  it("refuses a missing or unknown pair with exit 2", async () => {
    expect((await runScript("validate_gcs_training_file.sh", [])).code).toBe(2);
    const run = await runScript("validate_gcs_training_file.sh", ["EURUSD"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("unknown pair 'EURUSD'");
  });
});

describe("scripts/operator/execute_all_pairs_parallel.sh", () => {
  it("runs one execution of one task per pair, PAIRS split by task index, at most P at once, follows it through failed looks, and validates every pair", async () => {
    const pairs = ["eurusd", "gbpusd", "usdjpy"];
    // The first two looks at the running execution fail (no network): retried, not taken for its end.
    const run = await runScript("execute_all_pairs_parallel.sh", ["--pairs", pairs.join(" "), "--parallelism", "2"], { FAKE_CLOUD_DESCRIBE_FAILURES: "2" });
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(gcloudCalls(run, "run", "jobs", "update").map((c) => [flag(c, "tasks"), flag(c, "parallelism")])).toEqual([["3", "2"]]);
    const executes = gcloudCalls(run, "run", "jobs", "execute");
    expect(executes).toHaveLength(1);
    expect({ tasks: flag(executes[0]!, "tasks"), env: flag(executes[0]!, "update-env-vars"), async: executes[0]!.argv.includes("--async") }).toEqual({
      tasks: "3",
      env: "PAIRS=eurusd gbpusd usdjpy",
      async: true,
    });
    const execution = run.executions[0]!;
    expect(run.stderr).toContain(`could not describe ${execution.execution} (1 of 5 attempts); trying again in 0.2s`);
    expect(run.stderr).toContain(`could not describe ${execution.execution} (2 of 5 attempts)`);
    expect(execution.parallelismPeak).toBe(2);
    expect(execution.results!.map((r) => [r.attempts[0]!.env.CLOUD_RUN_TASK_INDEX, r.attempts[0]!.env.PAIRS, r.attempts[0]!.code])).toEqual([
      ["0", "eurusd gbpusd usdjpy", 0],
      ["1", "eurusd gbpusd usdjpy", 0],
      ["2", "eurusd gbpusd usdjpy", 0],
    ]);
    // Each task built its own pair: its log names it.
    for (const [i, pair] of pairs.entries()) {
      const log = await readFile(path.join(cloudDir(), "logs", `${execution.execution}-task${i}-attempt0.log`), "utf8");
      expect(log).toContain(`"message":"task ${i} of 3 builds ${pair} (from PAIRS, 3 listed)"`);
    }
    expect(tableRows(run.stdout)).toEqual({ eurusd: "0      ok", gbpusd: "1      ok", usdjpy: "2      ok" });
  });

  it("lowers the parallelism to the task count for an execution of fewer tasks (Cloud Run refuses more); the sequential script then sets the job back to 1 task at a time", async () => {
    const run = await runScript("execute_all_pairs_parallel.sh", ["--pairs", "eurusd gbpusd", "--parallelism", "4"]);
    expect(run.code, run.stdout + run.stderr).toBe(0);
    expect(run.stdout).toContain("note: parallelism 4 lowered to 2, the execution's task count (Cloud Run refuses more)");
    expect(gcloudCalls(run, "run", "jobs", "update").map((c) => [flag(c, "tasks"), flag(c, "parallelism")])).toEqual([["2", "2"]]);
    expect(run.executions[0]!.parallelismPeak).toBe(2);
    expect(tableRows(run.stdout)).toEqual({ eurusd: "0      ok", gbpusd: "1      ok" });

    // Its 1-task executions would be refused under the job's parallelism 2.
    const sequential = await runScript("execute_production_26pairs.sh", ["--pairs", "usdjpy"]);
    expect(sequential.code, sequential.stdout + sequential.stderr).toBe(0);
    expect(sequential.stdout).toContain(`== job ${JOB} runs up to 2 tasks at once; these executions have 1 task: setting it to 1 task, 1 at a time`);
    expect(gcloudCalls(sequential, "run", "jobs", "update").map((c) => [flag(c, "tasks"), flag(c, "parallelism")])).toEqual([["1", "1"]]);
    expect(tableRows(sequential.stdout)).toEqual({ usdjpy: expect.stringMatching(/^ok /) });
  });

  it("after a failed execution, names only the pairs it did not build, though an earlier run's file of one of them is still in the bucket", async () => {
    // gbpusd's task crashes on every attempt; its file from an earlier execution is still there, and valid.
    const earlier = gcs.getObject(OUTPUT_BUCKET, "runs/training_gbpusd.parquet")!.metadata.execution;
    expect(earlier).toMatch(/^bqx-ml-pipeline-[a-z0-9]{5}$/);
    const run = await runScript("execute_all_pairs_parallel.sh", ["--pairs", "eurusd gbpusd usdjpy"], { FAKE_CLOUD_FAIL_TASKS: "1" });
    expect(run.code).toBe(1);
    const name = run.executions[0]!.execution;
    expect(run.stdout).toContain(`== execution ${name} failed after`);
    expect(tableRows(run.stdout)).toEqual({ eurusd: "0      ok", gbpusd: "1      missing, stale or invalid", usdjpy: "2      ok" });
    expect(run.stdout).toContain(`FAIL  execution: built by execution ${earlier}, not ${name}: a file from an earlier run; ${name} did not build gbpusd`);
    expect(run.stderr).toContain(
      `ERROR: 1 of 3 pair(s) not built by execution ${name}; rerun them with: scripts/operator/execute_production_26pairs.sh --pairs "gbpusd"`,
    );
    expect(run.stderr).not.toContain('--pairs ""');
  });

  it("refuses an empty --pairs (exit 2) rather than building all 28, in both execute scripts", async () => {
    for (const script of ["execute_all_pairs_parallel.sh", "execute_production_26pairs.sh"]) {
      const run = await runScript(script, ["--pairs", ""]);
      expect(run.code, script).toBe(2);
      expect(run.stderr).toContain("ERROR: no pairs given");
      expect(run.calls).toEqual([]);
    }
  });

  it("passes PAIRS=all for all 28 pairs, and reports the pairs a failed execution left unbuilt", async () => {
    // Only 4 of the 28 are in the small warehouse: the other tasks fail, and the table says which.
    const run = await runScript("execute_all_pairs_parallel.sh", ["--tasks", "2", "--parallelism", "2"], { MAX_RETRIES: "0" });
    expect(run.code).toBe(1);
    const [execute] = gcloudCalls(run, "run", "jobs", "execute");
    expect({ tasks: flag(execute!, "tasks"), env: flag(execute!, "update-env-vars") }).toEqual({ tasks: "2", env: "PAIRS=all" });
    expect(run.stdout).toContain("note: 2 tasks for 28 pairs: a task builds up to 14 pairs one after another");
    expect(run.executions[0]!.results!.map((r) => r.attempts.at(-1)!.code)).toEqual([1, 1]);
    const rows = tableRows(run.stdout);
    expect(Object.keys(rows)).toEqual([...PAIRS]);
    expect(rows.nzdusd).toMatch(/missing, stale or invalid/);
    expect(run.stderr).toMatch(
      /ERROR: \d+ of 28 pair\(s\) not built by execution bqx-ml-pipeline-[a-z0-9]{5}; rerun them with: scripts\/operator\/execute_production_26pairs\.sh --pairs "[a-z]/,
    );
  }, 300_000);

  it("refuses more tasks than pairs before calling gcloud", async () => {
    const run = await runScript("execute_all_pairs_parallel.sh", ["--pairs", "eurusd gbpusd", "--tasks", "3"]);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain("--tasks 3: more tasks than the 2 pairs listed");
    expect(run.calls).toEqual([]);
  });
});

describe("the bash version guard (scripts/operator/common.sh)", () => {
  const scripts: Array<[string, string[]]> = [
    ["deploy.sh", ["--tag", "v9"]],
    ["execute_production_26pairs.sh", ["--pairs", "eurusd"]],
    ["execute_all_pairs_parallel.sh", ["--pairs", "eurusd"]],
    ["validate_gcs_training_file.sh", ["eurusd"]],
  ];
  // BASH_VERSINFO is read-only, so the guard reads BASH_VERSION, which a caller can set: this
  // plays stock macOS bash for the real scripts, sourced as they are run.
  const asBash = (version: string, script: string, args: string[]) => [
    "bash",
    "-c",
    `BASH_VERSION='${version}'; source scripts/operator/${script} ${args.join(" ")}`,
  ];

  it("refuses bash older than 4.4 (macOS ships 3.2) naming the version found and how to get a newer one, before any call", async () => {
    for (const [script, args] of scripts) {
      const run = await runScript(script, args, {}, asBash("3.2.57(1)-release", script, args));
      expect(run.code, script).toBe(1);
      expect(run.stderr).toMatch(
        new RegExp(
          `^ERROR: bash 3\\.2\\.57\\(1\\)-release \\(\\S*bash\\) is too old for scripts/operator/${script.replace(".", "\\.")}: they need bash 4\\.4 or newer\\.$`,
          "m",
        ),
      );
      expect(run.stderr).toContain(
        `On macOS (which ships bash 3.2): brew install bash, then run the script with it: "$(brew --prefix)/bin/bash" scripts/operator/${script} ...`,
      );
      expect(run.calls).toEqual([]);
    }
    const bash43 = await runScript("deploy.sh", [], {}, asBash("4.3.48(1)-release", "deploy.sh", ["--help"]));
    expect(bash43.code).toBe(1);
  });

  it("lets bash 4.4 and newer through", async () => {
    for (const version of ["4.4.20(1)-release", "5.2.15(1)-release"]) {
      const run = await runScript("deploy.sh", [], {}, asBash(version, "deploy.sh", ["--help"]));
      expect(run.code, version).toBe(0);
      expect(run.stdout).toMatch(/^usage: scripts\/operator\/deploy\.sh/);
    }
  });
});

// `gcloud run jobs create|update|describe|execute` and `gcloud run jobs executions describe`
// over v1 (Knative) resources shaped like the recorded ones (recorded/gcloud-run-v1.json), with
// the Cloud Run rules the operator scripts meet: parallelism may not exceed the task count (on
// the job, and for an execution whose --tasks override is below the job's parallelism; an
// execution cannot override parallelism); `execute --async` prints the name and returns while
// a detached process runs the tasks; `execute --wait` that fails exits 1 and names the
// execution on stderr only, as gcloud does. FAKE_CLOUD_DESCRIBE_FAILURES=N makes the first N
// `executions describe` calls for each execution fail as gcloud does without network
// ("always": every call).
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { flagValue, GcloudUsageError, type GcloudCommand } from "./cli.ts";
import { runExecution } from "./execution-runner.ts";
import { formatResource } from "./projection.ts";
import { GCLOUD, recordedResource, replay, type Names, type RecordedRun } from "./recorded.ts";
import { executionFile, jobsFile, LOCATION_LABEL, readExecution, readJobs, readJson, writeJson, type Execution, type Job } from "./state.ts";

const PROJECT_NUMBER = recordedResource<Job>("job").metadata.namespace;

/** gcloud's dictionary flags: KEY=VALUE pairs separated by commas, or by ^D^ as the first chars. */
function parseDict(flag: string, value: string): Record<string, string> {
  const custom = /^\^([^^]+)\^(.*)$/s.exec(value);
  const out: Record<string, string> = {};
  for (const item of (custom ? custom[2]! : value).split(custom ? custom[1]! : ",")) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    if (eq < 1) throw new GcloudUsageError(`ERROR: (gcloud.run.jobs) argument ${flag}: Bad syntax for dict arg: [${item}]`);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

/** gcloud's durations as the API's seconds: 7200, 7200s, 2h, 1h30m. */
function seconds(flag: string, value: string): string {
  const m = /^(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s?)?$/.exec(value);
  if (!m || value === "") throw new GcloudUsageError(`ERROR: (gcloud.run.jobs) argument ${flag}: Failed to parse duration: ${value}`);
  return String(Number(m[1] ?? 0) * 3600 + Number(m[2] ?? 0) * 60 + Number(m[3] ?? 0));
}

const out = (run: RecordedRun, stdout = run.stdout): number => {
  process.stdout.write(stdout);
  process.stderr.write(run.stderr);
  return run.exitCode;
};

/** A create/update the server refused: gcloud's progress lines, then its error. */
function deployFailure(verb: "create" | "update", names: Names, message: string): number {
  const lines = replay(verb === "create" ? "create: job exists" : "update: no such job", names)
    .stderr.trimEnd()
    .split("\n");
  lines[lines.length - 1] = `ERROR: (gcloud.run.jobs.${verb}) ${message}`;
  process.stderr.write(`${lines.join("\n")}\n`);
  return 1;
}
const PARALLELISM_REFUSED = GCLOUD.runs["update: parallelism above the task count"]!.stderr.trimEnd()
  .split("\n")
  .at(-1)!
  .replace(/^ERROR: \([^)]*\) /, "");

function images(dir: string): string[] {
  return readJson<string[]>(path.join(dir, "images.json"), []);
}

export function registerImage(dir: string, ref: string): void {
  writeJson(path.join(dir, "images.json"), [...new Set([...images(dir), ref])]);
}

function createOrUpdate(dir: string, cmd: GcloudCommand, names: Names): number {
  const verb = cmd.command === "run jobs create" ? "create" : "update";
  const jobs = readJobs(dir);
  const existing = jobs[names.job!];
  const found = existing && existing.metadata.labels?.[LOCATION_LABEL] === names.region ? existing : undefined;
  if (verb === "create" && found) return out(replay("create: job exists", names));
  if (verb === "update" && !found) return out(replay("update: no such job", names));
  const job: Job = found ? structuredClone(found) : recordedResource<Job>("job");
  const now = new Date().toISOString();
  if (!found) {
    job.metadata = {
      ...job.metadata,
      name: names.job!,
      namespace: PROJECT_NUMBER,
      selfLink: `/apis/run.googleapis.com/v1/namespaces/${PROJECT_NUMBER}/jobs/${names.job}`,
      generation: 0,
      creationTimestamp: now,
      labels: { [LOCATION_LABEL]: names.region! },
    };
    job.spec.template.spec = { taskCount: 1, template: { spec: { containers: [{ image: "" }] } } };
    delete job.status;
  }
  const exec = job.spec.template.spec;
  const task = exec.template.spec;
  const container = task.containers[0]!;
  const image = flagValue(cmd, "--image");
  if (verb === "create" && !image)
    throw new GcloudUsageError(
      "ERROR: (gcloud.run.jobs.create) Missing required argument [--image]: Requires a container image to deploy (e.g. `gcr.io/cloudrun/hello:latest`) if no build source is provided.",
    );
  if (image !== undefined) {
    if (!images(dir).includes(image)) return deployFailure(verb, names, `spec.template.spec.template.spec.containers[0].image: Image '${image}' not found.`);
    container.image = image;
  }
  const set = flagValue(cmd, "--set-env-vars");
  const update = flagValue(cmd, "--update-env-vars");
  if (set !== undefined || update !== undefined) {
    const env = {
      ...(set !== undefined ? {} : Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ""]))),
      ...parseDict(set !== undefined ? "--set-env-vars" : "--update-env-vars", set ?? update!),
    };
    container.env = Object.entries(env).map(([name, value]) => ({ name, value }));
  }
  const cpu = flagValue(cmd, "--cpu");
  const memory = flagValue(cmd, "--memory");
  if (cpu !== undefined || memory !== undefined)
    container.resources = { limits: { ...container.resources?.limits, ...(cpu ? { cpu } : {}), ...(memory ? { memory } : {}) } };
  const timeout = flagValue(cmd, "--task-timeout");
  if (timeout !== undefined) task.timeoutSeconds = seconds("--task-timeout", timeout);
  const retries = flagValue(cmd, "--max-retries");
  if (retries !== undefined) task.maxRetries = Number(retries);
  const account = flagValue(cmd, "--service-account");
  if (account !== undefined) task.serviceAccountName = account;
  const tasks = flagValue(cmd, "--tasks");
  if (tasks !== undefined) exec.taskCount = Number(tasks);
  const parallelism = flagValue(cmd, "--parallelism");
  if (parallelism !== undefined) exec.parallelism = Number(parallelism);
  if ((exec.parallelism ?? 0) > (exec.taskCount ?? 1)) return deployFailure(verb, names, PARALLELISM_REFUSED);
  // Flags gcloud accepts that the stand-in does not model (volumes, ...) are kept as given.
  const modeled = new Set([
    "--image",
    "--set-env-vars",
    "--update-env-vars",
    "--cpu",
    "--memory",
    "--task-timeout",
    "--max-retries",
    "--service-account",
    "--tasks",
    "--parallelism",
    "--region",
    "--project",
    "--quiet",
    "--format",
  ]);
  const unmodeled = [...cmd.flags].filter(([f]) => !modeled.has(f)).flatMap(([f, values]) => values.map((v) => (v === "" ? f : `${f}=${v}`)));
  if (unmodeled.length > 0) job.metadata.annotations = { ...job.metadata.annotations, "fake-cloud/unmodeled-flags": unmodeled.join(" ") };
  job.metadata.generation = (job.metadata.generation ?? 0) + 1;
  job.status = { ...job.status, observedGeneration: job.metadata.generation, conditions: [{ type: "Ready", status: "True", lastTransitionTime: now }] };
  writeJson(jobsFile(dir), { ...jobs, [names.job!]: job });
  return out(replay(verb === "create" ? "create" : "update: tasks and parallelism", names));
}

function newExecution(job: Job, names: Names, cmd: GcloudCommand, tasks: number): Execution {
  const execution = recordedResource<Execution>("execution (created)");
  const task = structuredClone(job.spec.template.spec.template.spec);
  const container = task.containers[0]!;
  const overrides = parseDict("--update-env-vars", flagValue(cmd, "--update-env-vars") ?? "");
  const env = { ...Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ""])), ...overrides };
  container.env = Object.entries(env).map(([name, value]) => ({ name, value }));
  const args = flagValue(cmd, "--args");
  if (args !== undefined) container.args = args === "" ? [] : args.split(",");
  const timeout = flagValue(cmd, "--task-timeout");
  if (timeout !== undefined) task.timeoutSeconds = seconds("--task-timeout", timeout);
  execution.metadata = {
    ...execution.metadata,
    name: names.execution!,
    namespace: PROJECT_NUMBER,
    selfLink: `/apis/run.googleapis.com/v1/namespaces/${PROJECT_NUMBER}/executions/${names.execution}`,
    creationTimestamp: new Date().toISOString(),
    labels: {
      ...execution.metadata.labels,
      [LOCATION_LABEL]: names.region!,
      "run.googleapis.com/job": names.job!,
      "run.googleapis.com/jobUid": job.metadata.uid ?? "",
    },
  };
  execution.spec = {
    ...(job.spec.template.spec.parallelism ? { parallelism: job.spec.template.spec.parallelism } : {}),
    taskCount: tasks,
    template: { spec: task },
  };
  execution.status = { observedGeneration: 1 };
  return execution;
}

async function execute(dir: string, cmd: GcloudCommand, names: Names): Promise<number> {
  const jobs = readJobs(dir);
  const job = jobs[names.job!];
  if (!job || job.metadata.labels?.[LOCATION_LABEL] !== names.region) return out(replay("execute: no such job", names));
  const tasks = Number(flagValue(cmd, "--tasks") ?? job.spec.template.spec.taskCount ?? 1);
  if ((job.spec.template.spec.parallelism ?? 0) > tasks) return out(replay("execute: fewer tasks than the job's parallelism", names));
  const wait = cmd.flags.has("--wait");
  if (!wait && !cmd.flags.has("--async")) throw new GcloudUsageError("fake gcloud: execute without --wait or --async is not emulated", 98);
  names.execution = `${names.job}-${[...randomBytes(5)].map((b) => "abcdefghijklmnopqrstuvwxyz0123456789"[b % 36]).join("")}`;
  const execution = newExecution(job, names, cmd, tasks);
  writeJson(executionFile(dir, names.execution), execution);
  job.status = {
    ...job.status,
    executionCount: (job.status?.executionCount ?? 0) + 1,
    latestCreatedExecution: { name: names.execution, creationTimestamp: execution.metadata.creationTimestamp! },
  };
  writeJson(jobsFile(dir), { ...jobs, [names.job!]: job });
  const format = flagValue(cmd, "--format") ?? "none";
  if (!wait) {
    // The execution runs on in the cloud, whatever happens to this process or its caller.
    const runner = spawn(process.execPath, [new URL("./fake-cloud.ts", import.meta.url).pathname, "execution-runner", names.execution], {
      detached: true,
      stdio: "ignore",
      env: process.env,
    });
    runner.unref();
    return out(replay("execute --async", names), formatResource(execution, format));
  }
  const ended = await runExecution(dir, names.execution);
  if (ended.status.conditions?.some((c) => c.type === "Completed" && c.status === "False")) return out(replay("execute --wait: execution fails", names));
  return out(replay("execute --wait: execution succeeds", names), formatResource(ended, format));
}

function describeFailsNow(dir: string, execution: string): boolean {
  const budget = process.env.FAKE_CLOUD_DESCRIBE_FAILURES;
  if (!budget) return false;
  if (budget === "always") return true;
  const counter = path.join(dir, "executions", `${execution}.describe-failures`);
  const used = existsSync(counter) ? Number(readFileSync(counter, "utf8")) : 0;
  if (used >= Number(budget)) return false;
  writeFileSync(counter, String(used + 1));
  return true;
}

export async function runJobs(dir: string, cmd: GcloudCommand): Promise<number> {
  const names: Names = {
    project: flagValue(cmd, "--project") ?? process.env.CLOUDSDK_CORE_PROJECT,
    region: flagValue(cmd, "--region"),
    projectNumber: PROJECT_NUMBER,
  };
  if (!names.region) throw new GcloudUsageError(`ERROR: (gcloud.${cmd.command.replaceAll(" ", ".")}) Required option [region] is not set.`, 1);
  const format = flagValue(cmd, "--format");
  if (cmd.command === "run jobs executions describe") {
    names.execution = cmd.positionals[0];
    const execution = names.execution ? readExecution(dir, names.execution) : undefined;
    if (describeFailsNow(dir, names.execution ?? "")) return out(replay("executions describe: no network", names));
    if (!execution || execution.metadata.labels?.[LOCATION_LABEL] !== names.region) return out(replay("executions describe: no such execution", names));
    if (!format) throw new GcloudUsageError("fake gcloud: executions describe without --format is not emulated", 98);
    process.stdout.write(formatResource(execution, format));
    return 0;
  }
  names.job = cmd.positionals[0];
  if (!names.job) throw new GcloudUsageError(`ERROR: (gcloud.${cmd.command.replaceAll(" ", ".")}) JOB must be specified.`);
  if (cmd.command === "run jobs describe") {
    const job = readJobs(dir)[names.job];
    if (!job || job.metadata.labels?.[LOCATION_LABEL] !== names.region) return out(replay("describe: no such job", names));
    if (!format) throw new GcloudUsageError("fake gcloud: describe without --format is not emulated", 98);
    process.stdout.write(formatResource(job, format));
    return 0;
  }
  if (cmd.command === "run jobs execute") return execute(dir, cmd, names);
  return createOrUpdate(dir, cmd, names);
}

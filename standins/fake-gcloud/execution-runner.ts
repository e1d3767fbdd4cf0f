// Runs one execution's tasks as Cloud Run would: the entrypoint in a process per task
// (CLOUD_RUN_* set), at most spec.parallelism at once, each retried up to maxRetries, with
// the container's environment (the job's variables and the execution's overrides) and its
// args appended to the command line. The v1 Execution's status evolves as tasks start and end
// (runningCount, succeededCount, failedCount, retriedCount), and completionTime and the
// Completed condition are set when the last task ends.
// Because the emulated cloud has no BigQuery, $FAKE_CLOUD_TASK_ENV (JSON) adds what the local
// world needs after the container's variables (BACKEND=local, WAREHOUSE, GCS_ENDPOINT, ...).
// Faults a test can ask for: FAKE_CLOUD_GHOST=1 completes the execution "successfully" without
// running anything (as the original's ghost executions did); FAKE_CLOUD_FAIL_TASKS="1,3" makes
// those task indexes exit 1 at once on every attempt, as a container that crashes would.
import { spawn } from "node:child_process";
import { appendFileSync, mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { recordedResource } from "./recorded.ts";
import { executionFile, readExecution, writeJson, type Condition, type Execution } from "./state.ts";

interface Attempt {
  attempt: number;
  code: number | null;
  argv: string[];
  env: Record<string, string>;
}

const now = () => new Date().toISOString();
const conditionsOf = (phase: "running" | "succeeded" | "failed") => recordedResource<Execution>(`execution (${phase})`).status.conditions ?? [];

function withTimes(conditions: Condition[], at: string, completed?: Partial<Condition>): Condition[] {
  return conditions.map((c) => ({ ...c, lastTransitionTime: at, ...(c.type === "Completed" && completed ? completed : {}) }));
}

export async function runExecution(dir: string, name: string): Promise<Execution> {
  const execution = readExecution(dir, name);
  if (!execution) throw new Error(`fake gcloud: no execution ${name}`);
  const save = () => writeJson(executionFile(dir, name), execution);
  const tasks = execution.spec.taskCount ?? 1;
  const limit = execution.spec.parallelism ? Math.min(execution.spec.parallelism, tasks) : tasks;
  const spec = execution.spec.template.spec;
  const container = spec.containers[0]!;
  const started = now();
  execution.status = { ...execution.status, startTime: started, conditions: withTimes(conditionsOf("running"), started) };
  save();

  const world = JSON.parse(process.env.FAKE_CLOUD_TASK_ENV ?? "{}") as Record<string, string>;
  const entrypoint = JSON.parse(process.env.FAKE_CLOUD_ENTRYPOINT ?? '["node", "src/main.ts"]') as string[];
  const cwd = process.env.FAKE_CLOUD_WORKDIR ?? process.cwd();
  const crashing = new Set((process.env.FAKE_CLOUD_FAIL_TASKS ?? "").split(",").filter(Boolean).map(Number));
  const ghost = process.env.FAKE_CLOUD_GHOST === "1";
  const logDir = path.join(dir, "logs");
  mkdirSync(logDir, { recursive: true });
  const counts = { running: 0, succeeded: 0, failed: 0, retried: 0 };
  const publish = () => {
    const { runningCount: _r, succeededCount: _s, failedCount: _f, retriedCount: _t, ...rest } = execution.status;
    execution.status = {
      ...rest,
      ...(counts.running ? { runningCount: counts.running } : {}),
      ...(counts.succeeded ? { succeededCount: counts.succeeded } : {}),
      ...(counts.failed ? { failedCount: counts.failed } : {}),
      ...(counts.retried ? { retriedCount: counts.retried } : {}),
    };
    save();
  };

  const runTask = (index: number, attempt: number): Promise<Attempt> =>
    new Promise((resolve, reject) => {
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        ...Object.fromEntries((container.env ?? []).map((e) => [e.name, e.value ?? ""])),
        ...world,
        CLOUD_RUN_JOB: execution.metadata.labels?.["run.googleapis.com/job"] ?? "",
        CLOUD_RUN_EXECUTION: name,
        CLOUD_RUN_TASK_INDEX: String(index),
        CLOUD_RUN_TASK_COUNT: String(tasks),
        CLOUD_RUN_TASK_ATTEMPT: String(attempt),
      };
      const recorded = Object.fromEntries(Object.entries(env).filter(([k]) => k !== "PATH" && k !== "HOME"));
      const argv = [...entrypoint, ...(container.args ?? [])];
      if (crashing.has(index)) return resolve({ attempt, code: 1, argv, env: recorded });
      const child = spawn(argv[0]!, argv.slice(1), { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr.on("data", (d: Buffer) => (output += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => {
        writeFileSync(path.join(logDir, `${name}-task${index}-attempt${attempt}.log`), output);
        resolve({ attempt, code, argv, env: recorded });
      });
    });

  const results: Array<{ index: number; attempts: Attempt[] }> = [];
  let peak = 0;
  if (ghost) {
    counts.succeeded = tasks;
  } else {
    let next = 0;
    await new Promise<void>((done, reject) => {
      const launch = () => {
        if (next >= tasks && counts.running === 0) return done();
        while (counts.running < limit && next < tasks) {
          const index = next++;
          counts.running += 1;
          peak = Math.max(peak, counts.running);
          publish();
          (async () => {
            const attempts: Attempt[] = [];
            for (let attempt = 0; attempt <= (spec.maxRetries ?? 3); attempt += 1) {
              if (attempt > 0) {
                counts.retried += 1;
                publish();
              }
              const result = await runTask(index, attempt);
              attempts.push(result);
              if (result.code === 0) break;
            }
            results.push({ index, attempts });
            counts.running -= 1;
            if (attempts.at(-1)?.code === 0) counts.succeeded += 1;
            else counts.failed += 1;
            publish();
            launch();
          })().catch(reject);
        }
      };
      launch();
    });
  }
  results.sort((a, b) => a.index - b.index);
  // The tests' record first, so it exists once a poller sees the execution complete.
  const record = { execution: name, job: execution.metadata.labels?.["run.googleapis.com/job"], tasks, parallelismPeak: peak, ran: !ghost, results };
  appendFileSync(path.join(dir, "executions.jsonl"), `${JSON.stringify(record)}\n`);
  const ended = now();
  const seconds = ((Date.parse(ended) - Date.parse(started)) / 1000).toFixed(2);
  const failedTask = results.find((r) => r.attempts.at(-1)?.code !== 0);
  execution.status.completionTime = ended;
  execution.status.conditions = failedTask
    ? withTimes(conditionsOf("failed"), ended, { message: `Task ${name}-task${failedTask.index} failed with message: The container exited with an error.` })
    : withTimes(conditionsOf("succeeded"), ended, { message: `Execution completed successfully in ${seconds}s.` });
  publish();
  return execution;
}

// Recording stand-ins for `gcloud`, `gsutil` and `docker`, put first on PATH by the operator
// script tests (the shell wrappers beside this file call it). Every call is appended to
// $FAKE_CLOUD_DIR/calls.jsonl with its argv and the variables that matter. Beyond recording it
// emulates what the scripts rely on:
// - Artifact Registry: `docker push` and `gcloud builds submit` register an image;
//   `gcloud artifacts docker images describe` finds it (or fails like gcloud).
// - Cloud Run jobs: `gcloud run jobs create/update/describe` keep the job in jobs.json;
//   `gcloud run jobs execute --wait` runs the job's tasks as Cloud Run would: the entrypoint in
//   a process per task (CLOUD_RUN_* set, --tasks and the job's --parallelism honoured, retries up
//   to --max-retries), with the job's env vars, the execution's --update-env-vars (split at
//   commas as gcloud does), and --args appended to the command line (not to the environment).
//   Because the emulated cloud has no BigQuery, $FAKE_CLOUD_TASK_ENV (JSON) adds what the local
//   world needs after the job's variables (BACKEND=local, WAREHOUSE, GCS_ENDPOINT, ...).
//   FAKE_CLOUD_GHOST=1 makes an execution "succeed" without running anything, as the
//   original's ghost executions did.
// - Cloud Storage: `gsutil stat` and `gsutil -q stat` answer from the GCS stand-in at
//   $GCS_ENDPOINT, in gsutil's output format.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";

const tool = process.argv[2] as "gcloud" | "gsutil" | "docker";
const argv = process.argv.slice(3);
const stateDir = process.env.FAKE_CLOUD_DIR;
if (!stateDir) {
  process.stderr.write(`fake ${tool}: FAKE_CLOUD_DIR is not set (the test must set it)\n`);
  process.exit(97);
}
mkdirSync(stateDir, { recursive: true });
const RECORDED_ENV = ["TARGET_PAIR", "PAIRS", "CLOUDSDK_CORE_PROJECT"];
appendFileSync(
  path.join(stateDir, "calls.jsonl"),
  `${JSON.stringify({ tool, argv, env: Object.fromEntries(RECORDED_ENV.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]])) })}\n`,
);

interface Job {
  name: string;
  image: string;
  region: string;
  project: string;
  env: Record<string, string>;
  cpu?: string;
  memory?: string;
  taskTimeout?: string;
  maxRetries: number;
  parallelism: number;
  tasks: number;
  serviceAccount?: string;
}

const readJson = <T>(file: string, fallback: T): T => (existsSync(path.join(stateDir, file)) ? (JSON.parse(readFileSync(path.join(stateDir, file), "utf8")) as T) : fallback);
const writeJson = (file: string, value: unknown) => writeFileSync(path.join(stateDir, file), `${JSON.stringify(value, null, 2)}\n`);
const fail = (message: string, code = 1): never => {
  process.stderr.write(`${message}\n`);
  process.exit(code);
};

/** Flags that take no value; every other --flag takes the next word (or =value). */
const BOOLEAN_FLAGS = new Set(["wait", "async", "quiet", "q", "execute-now", "no-build"]);

function parse(args: string[]): { positional: string[]; flags: Map<string, string[]> } {
  const positional: string[] = [];
  const flags = new Map<string, string[]>();
  for (let i = 0; i < args.length; i += 1) {
    const a = args[i]!;
    const m = /^--?([\w-]+)(?:=(.*))?$/s.exec(a);
    if (!m) {
      positional.push(a);
      continue;
    }
    const name = m[1]!;
    const value = m[2] ?? (BOOLEAN_FLAGS.has(name) ? "" : args[++i]);
    if (value === undefined) fail(`ERROR: (gcloud) argument --${name}: expected one argument`, 2);
    flags.set(name, [...(flags.get(name) ?? []), value!]);
  }
  return { positional, flags };
}

/** gcloud's dictionary flags: KEY=VALUE pairs separated by commas, or by ^D^ as the first chars. */
function parseDict(value: string): Record<string, string> {
  let sep = ",";
  let body = value;
  const custom = /^\^([^^]+)\^(.*)$/s.exec(value);
  if (custom) {
    sep = custom[1]!;
    body = custom[2]!;
  }
  const out: Record<string, string> = {};
  for (const item of body.split(sep)) {
    if (item === "") continue;
    const eq = item.indexOf("=");
    if (eq < 1) fail(`ERROR: (gcloud) Bad syntax for dict arg: [${item}]`, 2);
    out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}

const one = (flags: Map<string, string[]>, name: string) => flags.get(name)?.at(-1);

function images(): string[] {
  return readJson<string[]>("images.json", []);
}
function registerImage(ref: string): void {
  writeJson("images.json", [...new Set([...images(), ref])]);
}

async function gcloud(): Promise<number> {
  const { positional, flags } = parse(argv);
  const command = positional.slice(0, 3).join(" ");
  if (positional[0] === "auth" && positional[1] === "configure-docker") return 0;
  if (positional.slice(0, 4).join(" ") === "artifacts docker images describe") {
    const ref = positional[4]!;
    if (!images().includes(ref)) fail(`ERROR: (gcloud.artifacts.docker.images.describe) NOT_FOUND: Requested entity was not found. [${ref}]`);
    process.stdout.write(`image_summary:\n  fully_qualified_digest: ${ref.split(":")[0]}@sha256:${"0".repeat(64)}\n`);
    return 0;
  }
  if (positional[0] === "builds" && positional[1] === "submit") {
    const config = one(flags, "config");
    if (!config || !existsSync(config)) fail("ERROR: (gcloud.builds.submit) --config file not found");
    const text = readFileSync(config!, "utf8");
    writeFileSync(path.join(stateDir!, "last-build-config.yaml"), text);
    const built = /images:\s*\["([^"]+)"\]/.exec(text)?.[1];
    if (!built) fail("ERROR: (gcloud.builds.submit) the build config names no image");
    registerImage(built!);
    return 0;
  }
  if (command === "run jobs describe" || command === "run jobs create" || command === "run jobs update" || command === "run jobs execute") {
    const name = positional[3];
    if (!name) fail(`ERROR: (gcloud.${positional.slice(0, 3).join(".")}) JOB must be specified.`, 2);
    const jobs = readJson<Record<string, Job>>("jobs.json", {});
    const job = jobs[name!];
    if (command === "run jobs describe") {
      if (!job) fail(`ERROR: (gcloud.run.jobs.describe) Cannot find job [${name}].`);
      const format = one(flags, "format") ?? "";
      process.stdout.write(format.includes("containers[0].image") ? `${job!.image}\n` : format.includes("metadata.name") ? `${name}\n` : `${JSON.stringify(job)}\n`);
      return 0;
    }
    if (command === "run jobs create" || command === "run jobs update") {
      if (command === "run jobs create" && job) fail(`ERROR: (gcloud.run.jobs.create) Job [${name}] already exists.`);
      if (command === "run jobs update" && !job) fail(`ERROR: (gcloud.run.jobs.update) Job [${name}] could not be found.`);
      const image = one(flags, "image") ?? job?.image;
      if (!image) fail("ERROR: (gcloud.run.jobs.create) Missing required argument [--image].", 2);
      if (one(flags, "image") !== undefined && !images().includes(image!)) fail(`ERROR: (gcloud.run.jobs.${positional[2]}) Image '${image}' not found.`);
      const env = flags.has("set-env-vars") ? parseDict(one(flags, "set-env-vars")!) : { ...(job?.env ?? {}), ...parseDict(one(flags, "update-env-vars") ?? "") };
      jobs[name!] = {
        name: name!,
        image: image!,
        region: one(flags, "region") ?? job?.region ?? "",
        project: one(flags, "project") ?? job?.project ?? "",
        env,
        cpu: one(flags, "cpu") ?? job?.cpu,
        memory: one(flags, "memory") ?? job?.memory,
        taskTimeout: one(flags, "task-timeout") ?? job?.taskTimeout,
        maxRetries: Number(one(flags, "max-retries") ?? job?.maxRetries ?? 3),
        parallelism: Number(one(flags, "parallelism") ?? job?.parallelism ?? 0),
        tasks: Number(one(flags, "tasks") ?? job?.tasks ?? 1),
        serviceAccount: one(flags, "service-account") ?? job?.serviceAccount,
      };
      writeJson("jobs.json", jobs);
      process.stderr.write(`Job [${name}] has successfully been ${command === "run jobs create" ? "created" : "updated"}.\n`);
      return 0;
    }
    if (!job) fail(`ERROR: (gcloud.run.jobs.execute) Job [${name}] could not be found.`);
    return execute(job!, flags);
  }
  return fail(`fake gcloud: unsupported command: gcloud ${argv.join(" ")}`, 98);
}

interface Attempt {
  attempt: number;
  code: number | null;
  argv: string[];
  env: Record<string, string>;
}

async function execute(job: Job, flags: Map<string, string[]>): Promise<number> {
  const execution = `${job.name}-${randomBytes(3).toString("hex").slice(0, 5)}`;
  const tasks = Number(one(flags, "tasks") ?? job.tasks);
  const overrides = parseDict(one(flags, "update-env-vars") ?? "");
  const extraArgs = flags.has("args") ? one(flags, "args")!.split(",") : [];
  const wait = flags.has("wait");
  const printName = () => {
    if ((one(flags, "format") ?? "").includes("metadata.name")) process.stdout.write(`${execution}\n`);
  };
  process.stderr.write(`Creating execution... Done.\n`);
  if (!wait || process.env.FAKE_CLOUD_GHOST === "1") {
    appendFileSync(path.join(stateDir!, "executions.jsonl"), `${JSON.stringify({ execution, job: job.name, tasks, overrides, ran: false })}\n`);
    printName();
    process.stderr.write(wait ? `Execution [${execution}] has successfully completed.\n` : `Execution [${execution}] has started running.\n`);
    return 0;
  }
  const world = JSON.parse(process.env.FAKE_CLOUD_TASK_ENV ?? "{}") as Record<string, string>;
  const entrypoint = JSON.parse(process.env.FAKE_CLOUD_ENTRYPOINT ?? '["node", "src/main.ts"]') as string[];
  const cwd = process.env.FAKE_CLOUD_WORKDIR ?? process.cwd();
  const logDir = path.join(stateDir!, "logs");
  mkdirSync(logDir, { recursive: true });

  const runTask = (index: number, attempt: number): Promise<Attempt> =>
    new Promise((resolve, reject) => {
      const env: Record<string, string> = {
        PATH: process.env.PATH ?? "",
        HOME: process.env.HOME ?? "/tmp",
        ...job.env,
        ...overrides,
        ...world,
        CLOUD_RUN_JOB: job.name,
        CLOUD_RUN_EXECUTION: execution,
        CLOUD_RUN_TASK_INDEX: String(index),
        CLOUD_RUN_TASK_COUNT: String(tasks),
        CLOUD_RUN_TASK_ATTEMPT: String(attempt),
      };
      const [command, ...args] = [...entrypoint, ...extraArgs];
      const log = path.join(logDir, `${execution}-task${index}-attempt${attempt}.log`);
      const child = spawn(command!, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
      let output = "";
      child.stdout.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr.on("data", (d: Buffer) => (output += d.toString()));
      child.on("error", reject);
      child.on("close", (code) => {
        writeFileSync(log, output);
        const recorded = Object.fromEntries(Object.entries(env).filter(([k]) => k !== "PATH" && k !== "HOME"));
        resolve({ attempt, code, argv: [command!, ...args], env: recorded });
      });
    });

  const results: Array<{ index: number; attempts: Attempt[] }> = [];
  const limit = job.parallelism > 0 ? Math.min(job.parallelism, tasks) : tasks;
  let next = 0;
  let running = 0;
  let peak = 0;
  await new Promise<void>((done, reject) => {
    const launch = () => {
      if (next >= tasks && running === 0) return done();
      while (running < limit && next < tasks) {
        const index = next++;
        running += 1;
        peak = Math.max(peak, running);
        (async () => {
          const attempts: Attempt[] = [];
          for (let attempt = 0; attempt <= job.maxRetries; attempt += 1) {
            const result = await runTask(index, attempt);
            attempts.push(result);
            if (result.code === 0) break;
          }
          results.push({ index, attempts });
          running -= 1;
          launch();
        })().catch(reject);
      }
    };
    launch();
  });
  results.sort((a, b) => a.index - b.index);
  const failed = results.filter((r) => r.attempts.at(-1)?.code !== 0);
  appendFileSync(path.join(stateDir!, "executions.jsonl"), `${JSON.stringify({ execution, job: job.name, tasks, parallelismPeak: peak, overrides, ran: true, results })}\n`);
  printName();
  if (failed.length > 0) {
    process.stderr.write(`ERROR: (gcloud.run.jobs.execute) The execution failed: ${failed.length} of ${tasks} task(s) failed (tasks ${failed.map((f) => f.index).join(", ")}).\n`);
    return 1;
  }
  process.stderr.write(`Execution [${execution}] has successfully completed.\n`);
  return 0;
}

async function gsutil(): Promise<number> {
  const quiet = argv[0] === "-q";
  const args = quiet ? argv.slice(1) : argv;
  if (args[0] !== "stat" || args.length !== 2) return fail(`fake gsutil: unsupported command: gsutil ${argv.join(" ")}`, 98);
  const m = /^gs:\/\/([^/]+)\/(.+)$/.exec(args[1]!);
  if (!m) return fail(`CommandException: "${args[1]}" is not a valid object URL`, 1);
  const endpoint = process.env.GCS_ENDPOINT;
  if (!endpoint) return fail("fake gsutil: GCS_ENDPOINT is not set (the test must point it at the GCS stand-in)", 97);
  const res = await fetch(`${endpoint}/storage/v1/b/${encodeURIComponent(m[1]!)}/o/${encodeURIComponent(m[2]!)}`);
  if (res.status === 404) {
    if (!quiet) process.stderr.write(`No URLs matched: ${args[1]}\n`);
    return 1;
  }
  if (!res.ok) return fail(`fake gsutil: the stand-in answered ${res.status}`, 1);
  if (quiet) return 0;
  const o = (await res.json()) as { size: string; contentType?: string; crc32c: string; md5Hash: string; generation: string; metadata?: Record<string, string>; timeCreated?: string; updated?: string };
  const lines = [
    `${args[1]}:`,
    `    Creation time:          ${new Date(o.timeCreated ?? Date.now()).toUTCString()}`,
    `    Update time:            ${new Date(o.updated ?? o.timeCreated ?? Date.now()).toUTCString()}`,
    `    Storage class:          STANDARD`,
    `    Content-Length:         ${o.size}`,
    `    Content-Type:           ${o.contentType ?? "application/octet-stream"}`,
    ...(o.metadata && Object.keys(o.metadata).length > 0 ? ["    Metadata:", ...Object.entries(o.metadata).map(([k, v]) => `        ${`${k}:`.padEnd(20)}${v}`)] : []),
    `    Hash (crc32c):          ${o.crc32c}`,
    `    Hash (md5):             ${o.md5Hash}`,
    `    ETag:                   C${o.generation.slice(-6)}EAE=`,
    `    Generation:             ${o.generation}`,
    `    Metageneration:         1`,
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
  return 0;
}

function docker(): number {
  const { positional, flags } = parse(argv);
  if (positional[0] === "build") {
    const file = one(flags, "file") ?? one(flags, "f");
    const tag = one(flags, "tag") ?? one(flags, "t");
    const context = positional[1];
    if (!file || !existsSync(file) || !tag || !context || !existsSync(context)) fail(`fake docker: build needs --file, --tag and a context that exist (got ${argv.join(" ")})`, 1);
    writeJson("built.json", [...readJson<string[]>("built.json", []), tag!]);
    return 0;
  }
  if (positional[0] === "push") {
    const ref = positional[1]!;
    if (!readJson<string[]>("built.json", []).includes(ref)) fail(`An image does not exist locally with the tag: ${ref}`);
    registerImage(ref);
    return 0;
  }
  return fail(`fake docker: unsupported command: docker ${argv.join(" ")}`, 98);
}

process.exitCode = tool === "gcloud" ? await gcloud() : tool === "gsutil" ? await gsutil() : docker();

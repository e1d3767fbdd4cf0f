// Recording stand-ins for `gcloud`, `gsutil` and `docker`, put first on PATH by the operator
// script tests (the shell wrappers beside this file call it). Every call is appended to
// $FAKE_CLOUD_DIR/calls.jsonl with its argv and the variables that matter. They are as strict
// as the real tools on what the scripts use, answering from what gcloud 578 and gsutil 5.37
// really printed (recorded/, see its README):
// - gcloud: each command's flags are gcloud's own (recorded from its parser); unknown flags,
//   missing values, out-of-range integers and mutually exclusive flags are refused as gcloud
//   refuses them. Cloud Run jobs and executions are v1 resources (run-jobs.ts); `version`
//   reports 578.0.0, or $FAKE_CLOUD_GCLOUD_VERSION.
// - Artifact Registry: `docker push` and `gcloud builds submit` register an image;
//   `gcloud artifacts docker images describe` finds it (or fails).
// - Cloud Storage: `gsutil [-q] stat` (gsutil.ts).
// - docker: `build` (--file, --tag, --platform, a context) and `push`; anything else is refused.
import { appendFileSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { flagValue, GcloudUsageError, parseGcloud } from "./cli.ts";
import { runExecution } from "./execution-runner.ts";
import { gsutil } from "./gsutil.ts";
import { formatResource } from "./projection.ts";
import { GCLOUD } from "./recorded.ts";
import { registerImage, runJobs } from "./run-jobs.ts";
import { readJson, stateDir, writeJson } from "./state.ts";

const tool = process.argv[2] as "gcloud" | "gsutil" | "docker" | "execution-runner";
const argv = process.argv.slice(3);
const dir = stateDir();
const RECORDED_ENV = ["TARGET_PAIR", "PAIRS", "CLOUDSDK_CORE_PROJECT"];

function fail(message: string, code = 1): number {
  process.stderr.write(`${message}\n`);
  return code;
}

async function gcloud(): Promise<number> {
  const cmd = parseGcloud(argv);
  switch (cmd.command) {
    case "version": {
      const version = process.env.FAKE_CLOUD_GCLOUD_VERSION ?? GCLOUD.gcloud;
      const format = flagValue(cmd, "--format");
      process.stdout.write(format ? formatResource({ "Google Cloud SDK": version }, format) : GCLOUD.runs.version!.stdout.replace(GCLOUD.gcloud, version));
      return 0;
    }
    case "auth configure-docker":
      return 0;
    case "artifacts docker images describe": {
      const ref = cmd.positionals[0]!;
      if (!readJson<string[]>(path.join(dir, "images.json"), []).includes(ref))
        return fail(`ERROR: (gcloud.artifacts.docker.images.describe) NOT_FOUND: Requested entity was not found. [${ref}]`);
      process.stdout.write(`image_summary:\n  fully_qualified_digest: ${ref.split(":")[0]}@sha256:${"0".repeat(64)}\n`);
      return 0;
    }
    case "builds submit": {
      const config = flagValue(cmd, "--config");
      if (!config || !existsSync(config)) return fail("ERROR: (gcloud.builds.submit) --config file not found");
      const text = readFileSync(config, "utf8");
      writeFileSync(path.join(dir, "last-build-config.yaml"), text);
      const built = /images:\s*\["([^"]+)"\]/.exec(text)?.[1];
      if (!built) return fail("ERROR: (gcloud.builds.submit) the build config names no image");
      registerImage(dir, built);
      return 0;
    }
    default:
      return runJobs(dir, cmd);
  }
}

/** docker's flags for the two commands the scripts use: name -> takes a value. */
const DOCKER_FLAGS: Record<string, Record<string, boolean>> = {
  build: { "--file": true, "-f": true, "--tag": true, "-t": true, "--platform": true },
  push: {},
};

function docker(): number {
  const [command, ...rest] = argv;
  const known = command ? DOCKER_FLAGS[command] : undefined;
  if (!known) return fail(`fake docker: unsupported command: docker ${argv.join(" ")}`, 98);
  const flags = new Map<string, string>();
  const positional: string[] = [];
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i]!;
    if (!arg.startsWith("-")) {
      positional.push(arg);
      continue;
    }
    const [name, inline] = arg.includes("=") ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)] : [arg, undefined];
    if (!(name in known)) return fail(`unknown flag: ${name}\nSee 'docker ${command} --help'.`, 125);
    flags.set(
      name.replace(/^-([ft])$/, (_, s: string) => (s === "f" ? "--file" : "--tag")),
      inline ?? rest[++i] ?? "",
    );
  }
  if (command === "build") {
    const file = flags.get("--file");
    const tag = flags.get("--tag");
    const context = positional[0];
    if (!file || !existsSync(file) || !tag || !context || !existsSync(context))
      return fail(`fake docker: build needs --file, --tag and a context that exist (got ${argv.join(" ")})`);
    writeJson(path.join(dir, "built.json"), [
      ...readJson<Array<{ tag: string; platform: string | null }>>(path.join(dir, "built.json"), []),
      { tag, platform: flags.get("--platform") ?? null },
    ]);
    return 0;
  }
  const ref = positional[0] ?? "";
  if (!readJson<Array<{ tag: string }>>(path.join(dir, "built.json"), []).some((b) => b.tag === ref))
    return fail(`An image does not exist locally with the tag: ${ref}`);
  registerImage(dir, ref);
  return 0;
}

async function main(): Promise<number> {
  if (tool === "execution-runner") {
    await runExecution(dir, argv[0]!);
    return 0;
  }
  appendFileSync(
    path.join(dir, "calls.jsonl"),
    `${JSON.stringify({ tool, argv, env: Object.fromEntries(RECORDED_ENV.filter((k) => process.env[k] !== undefined).map((k) => [k, process.env[k]])) })}\n`,
  );
  try {
    if (tool === "gcloud") return await gcloud();
    if (tool === "gsutil") return await gsutil(argv);
    return docker();
  } catch (err) {
    if (err instanceof GcloudUsageError) return fail(err.message, err.exitCode);
    throw err;
  }
}

process.exitCode = await main();

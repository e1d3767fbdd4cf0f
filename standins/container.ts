// The runtime image of Dockerfile.cloudrun, reproduced in a directory without a Docker engine:
// the stages the runtime stage copies from are replayed first (RUN included for the stage its
// node_modules come from, so `npm ci --omit=dev` really runs, under Node 24 as in the image), then
// the runtime stage's COPYs. What the runtime stage gets is then exactly what the image holds
// under /app, and its ENTRYPOINT can be run as Cloud Run would run it.
// No vitest imports: scripts/bench/cold-start.ts uses it from a plain Node process.
import { execFileSync, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, readFile, realpath, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { parseDockerfile, replayStage, splitFlags, type ReplayedStage } from "./dockerfile.ts";

export const RUNTIME_STAGE = "runtime";

export interface RuntimeImage extends ReplayedStage {
  /** Directory holding `node` (this Node 24) and `npm` (the system npm run by this Node). */
  binDir: string;
  installSeconds: number;
  /** The RUN commands that were executed, in order. */
  ran: string[];
}

/** The system npm's CLI script, to run it under this process's Node (24) as the image does. */
async function npmCli(): Promise<string> {
  const npm = execFileSync("/bin/sh", ["-c", "command -v npm"], { encoding: "utf8" }).trim();
  if (!npm) throw new Error("npm is not on PATH; the container contract needs it to install the runtime dependencies");
  return realpath(npm);
}

/**
 * The machine's registry settings: proxy and CA variables, the npm settings that say how to
 * reach the registry, and the system npm's global npmrc (npm looks for that file next to the
 * Node running it, which here is Node 24 from node_modules, so it would otherwise be missed).
 */
function registryEnv(npmCliPath: string): Record<string, string> {
  const passed = Object.entries(process.env).filter(
    ([k, v]) =>
      v !== undefined &&
      /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|HTTPS?_PROXY|https?_proxy|NO_PROXY|no_proxy|npm_config_(cafile|ca|registry|proxy|https_proxy|noproxy|strict_ssl|cache))$/.test(
        k,
      ),
  ) as Array<[string, string]>;
  const env = Object.fromEntries(passed);
  // <prefix>/lib/node_modules/npm/bin/npm-cli.js -> <prefix>/etc/npmrc
  const globalConfig = path.resolve(path.dirname(npmCliPath), "..", "..", "..", "..", "etc", "npmrc");
  if (existsSync(globalConfig)) env.npm_config_globalconfig = globalConfig;
  return env;
}

/** `node` and `npm` as the image has them: Node 24 first on PATH. */
async function imageBinDir(dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await symlink(process.execPath, path.join(dir, "node"));
  const cli = await npmCli();
  await writeFile(path.join(dir, "npm"), `#!/bin/sh\nexec "${process.execPath}" "${cli}" "$@"\n`);
  await chmod(path.join(dir, "npm"), 0o755);
  return dir;
}

export async function buildRuntimeImage(opts: { contextDir: string; outDir: string }): Promise<RuntimeImage> {
  const dockerfile = parseDockerfile(await readFile(path.join(opts.contextDir, "Dockerfile.cloudrun"), "utf8"));
  const runtime = dockerfile.stages.find((s) => s.name === RUNTIME_STAGE);
  if (!runtime) throw new Error(`Dockerfile.cloudrun has no stage named ${RUNTIME_STAGE}`);
  const binDir = await imageBinDir(path.join(opts.outDir, "bin"));
  const runEnv: Record<string, string> = {
    // How this machine reaches the registry (proxy, CA), which the image build would have too.
    ...registryEnv(await npmCli()),
    PATH: `${binDir}:/usr/local/bin:/usr/bin:/bin`,
    HOME: process.env.HOME ?? "/root",
    TMPDIR: process.env.TMPDIR ?? "/tmp",
    // The image's build would download; the local cache gives the same files faster.
    npm_config_prefer_offline: "true",
    npm_config_update_notifier: "false",
  };
  const roots = new Map<string, string>();
  const ran: string[] = [];
  const started = performance.now();
  // The stages the runtime copies from, in Dockerfile order. Only the one providing node_modules
  // runs its RUN instructions; the others contribute files copied from the context.
  const copies = runtime.instructions.filter((i) => i.keyword === "COPY").map((i) => ({ ...splitFlags(i.args), line: i.line }));
  const sources = [...new Set(copies.map((c) => c.flags.from).filter((f): f is string => f !== undefined))];
  const installer = copies.find((c) => c.flags.from !== undefined && /node_modules/.test(c.rest))?.flags.from;
  for (const stage of dockerfile.stages) {
    if (!stage.name || !sources.includes(stage.name)) continue;
    await replayStage(stage.name, {
      dockerfile,
      contextDir: opts.contextDir,
      roots,
      root: path.join(opts.outDir, stage.name),
      runEnv,
      skipRun: stage.name !== installer,
      onRun: (c) => ran.push(c),
    });
  }
  const replayed = await replayStage(RUNTIME_STAGE, {
    dockerfile,
    contextDir: opts.contextDir,
    roots,
    root: path.join(opts.outDir, RUNTIME_STAGE),
    runEnv,
    moveFromStages: true,
    onRun: (c) => ran.push(c),
  });
  return { ...replayed, binDir, installSeconds: (performance.now() - started) / 1000, ran };
}

export interface EntrypointRun {
  code: number | null;
  stdout: string;
  stderr: string;
  lines: Array<Record<string, unknown>>;
  /** Milliseconds from spawn to each line's arrival, by line index. */
  arrivalMs: number[];
}

/**
 * Runs the image's ENTRYPOINT in its WORKDIR with the image's ENV plus `env`, and a PATH whose
 * `node` is Node 24, as Cloud Run would start the container. `args` are appended, as `gcloud run
 * jobs execute --args` appends them; `stopWhen` may end the run early (SIGTERM).
 */
export function runEntrypoint(
  image: Pick<RuntimeImage, "workdir" | "env" | "entrypoint" | "binDir">,
  env: Record<string, string>,
  opts: { timeoutMs?: number; stopWhen?: (line: Record<string, unknown>) => boolean; args?: string[] } = {},
): Promise<EntrypointRun> {
  const [command, ...args] = image.entrypoint ?? [];
  if (!command) throw new Error("the runtime stage has no ENTRYPOINT");
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, [...args, ...(opts.args ?? [])], {
      cwd: image.workdir,
      env: { PATH: `${image.binDir}:/usr/local/bin:/usr/bin:/bin`, HOME: "/tmp", ...image.env, ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    let pending = "";
    const lines: Array<Record<string, unknown>> = [];
    const arrivalMs: number[] = [];
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      pending += d.toString();
      const parts = pending.split("\n");
      pending = parts.pop() ?? "";
      for (const part of parts) {
        if (!part.startsWith("{")) continue;
        const line = JSON.parse(part) as Record<string, unknown>;
        lines.push(line);
        arrivalMs.push(performance.now() - started);
        if (opts.stopWhen?.(line)) child.kill("SIGTERM");
      }
    });
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 120_000);
    child.on("error", reject);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, lines, arrivalMs });
    });
  });
}

/** Bytes under `nodeModules` (du -sb), and how many packages npm installed there (its hidden lockfile). */
export async function installSize(nodeModules: string): Promise<{ bytes: number; packages: number; names: string[] }> {
  const bytes = Number(execFileSync("du", ["-sb", nodeModules], { encoding: "utf8" }).split("\t")[0]);
  const lock = JSON.parse(await readFile(path.join(nodeModules, ".package-lock.json"), "utf8")) as { packages: Record<string, unknown> };
  const names = Object.keys(lock.packages).map((k) => k.slice(k.lastIndexOf("node_modules/") + "node_modules/".length));
  return { bytes, packages: names.length, names: [...new Set(names)].sort() };
}

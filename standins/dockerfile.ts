// Reads Dockerfile.cloudrun and .dockerignore, and replays a stage's COPY and RUN instructions
// into a directory on this machine, the way `docker build` would run them in the image, so the
// container contract can be tested without a Docker engine (test/integration/container-contract).
// Covers the subset of the Dockerfile syntax this project uses: comments, line continuations,
// global ARGs in FROM, ENV key=value lists, COPY [--from] [--chown] src... dest, RUN with
// BuildKit flags (--mount), WORKDIR, USER, ENTRYPOINT/CMD in exec or shell form.
import { spawn } from "node:child_process";
import { cp, mkdir, readFile, readdir, rename, stat } from "node:fs/promises";
import path from "node:path";

export interface Instruction {
  keyword: string;
  /** Everything after the keyword, continuation lines joined, comments inside removed. */
  args: string;
  /** 1-based line of the keyword. */
  line: number;
}

export interface Stage {
  name: string | undefined;
  /** The FROM image with global ARGs substituted, e.g. node:24.21.0-bookworm-slim. */
  base: string;
  /** The FROM image as written, e.g. node:${NODE_VERSION}-bookworm-slim. */
  baseAsWritten: string;
  instructions: Instruction[];
}

export interface Dockerfile {
  /** Global ARGs (before the first FROM) and their defaults. */
  args: Record<string, string>;
  stages: Stage[];
  /** Every instruction, in order (global ARGs and FROMs included). */
  instructions: Instruction[];
}

export function parseDockerfile(text: string): Dockerfile {
  const instructions: Instruction[] = [];
  const lines = text.split("\n");
  let current: Instruction | undefined;
  for (const [i, raw] of lines.entries()) {
    const trimmed = raw.trim();
    // Comment lines are dropped, also between continuation lines (Docker does the same).
    if (trimmed.startsWith("#")) continue;
    if (current === undefined) {
      if (trimmed === "") continue;
      const m = /^(\S+)\s*(.*)$/.exec(trimmed)!;
      current = { keyword: m[1]!.toUpperCase(), args: "", line: i + 1 };
      const rest = m[2]!;
      if (rest.endsWith("\\")) current.args = rest.slice(0, -1);
      else {
        current.args = rest;
        instructions.push(current);
        current = undefined;
      }
    } else if (trimmed.endsWith("\\")) {
      current.args += ` ${trimmed.slice(0, -1)}`;
    } else {
      current.args += ` ${trimmed}`;
      instructions.push(current);
      current = undefined;
    }
  }
  if (current) instructions.push(current);
  for (const ins of instructions) ins.args = ins.args.replace(/\s+/g, " ").trim();

  const args: Record<string, string> = {};
  const stages: Stage[] = [];
  for (const ins of instructions) {
    if (ins.keyword === "FROM") {
      const m = /^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$/i.exec(ins.args);
      if (!m) throw new Error(`Dockerfile line ${ins.line}: cannot read FROM ${ins.args}`);
      const base = m[1]!.replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string | undefined, b: string | undefined) => args[(a ?? b)!] ?? "");
      stages.push({ name: m[2], base, baseAsWritten: m[1]!, instructions: [] });
    } else if (stages.length === 0) {
      if (ins.keyword !== "ARG") throw new Error(`Dockerfile line ${ins.line}: ${ins.keyword} before the first FROM`);
      const [name, value] = ins.args.split("=", 2);
      args[name!.trim()] = (value ?? "").trim();
    } else {
      stages.at(-1)!.instructions.push(ins);
    }
  }
  return { args, stages, instructions };
}

/** Splits an instruction's arguments into leading `--flag[=value]` options and the rest. */
export function splitFlags(args: string): { flags: Record<string, string>; rest: string } {
  const flags: Record<string, string> = {};
  let rest = args;
  for (;;) {
    const m = /^--([\w-]+)(?:=(\S*))?\s+/.exec(rest);
    if (!m) return { flags, rest };
    flags[m[1]!] = m[2] ?? "";
    rest = rest.slice(m[0].length);
  }
}

/** ENV's `K=V K2="V 2"` list (or the legacy `K V` form). */
export function parseEnv(args: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (!/^\w+=/.test(args)) {
    const [name, ...value] = args.split(" ");
    env[name!] = value.join(" ");
    return env;
  }
  const re = /(\w+)=("(?:[^"\\]|\\.)*"|'[^']*'|\S*)/g;
  for (const m of args.matchAll(re)) {
    const v = m[2]!;
    env[m[1]!] = v.startsWith('"') ? v.slice(1, -1).replace(/\\(.)/g, "$1") : v.startsWith("'") ? v.slice(1, -1) : v;
  }
  return env;
}

/** An ENTRYPOINT or CMD in exec form as argv; undefined for the shell form. */
export function execForm(args: string): string[] | undefined {
  if (!args.startsWith("[")) return undefined;
  const parsed: unknown = JSON.parse(args);
  return Array.isArray(parsed) && parsed.every((a) => typeof a === "string") ? parsed : undefined;
}

/**
 * .dockerignore as Docker reads it: a path is left out of the build context when the last
 * pattern matching it, or one of its parent directories, is not a `!` exception. `*` and `?`
 * stay within one path segment (and match dot files), `**` spans any number of segments.
 */
export function dockerignoreMatcher(text: string): ((relativePath: string) => boolean) & { mayReinclude: (dir: string) => boolean } {
  const rules = text
    .split("\n")
    .map((l) => l.trim())
    .filter((l) => l !== "" && !l.startsWith("#"))
    .map((l) => {
      const negated = l.startsWith("!");
      const pattern = path.posix.normalize((negated ? l.slice(1) : l).trim()).replace(/^\/+|\/+$/g, "");
      return { negated, pattern, regex: globToRegExp(pattern) };
    });
  const matcher = (relativePath: string) => {
    const parts = relativePath.split("/");
    const prefixes = parts.map((_, i) => parts.slice(0, i + 1).join("/"));
    let excluded = false;
    for (const rule of rules) {
      if (prefixes.some((p) => rule.regex.test(p))) excluded = !rule.negated;
    }
    return excluded;
  };
  // Whether an exception could re-include something under an excluded directory: Docker walks
  // into an excluded directory only then.
  const literalPrefixes = rules.filter((r) => r.negated).map((r) => r.pattern.split(/[*?[]/)[0]!);
  const mayReinclude = (dir: string) => literalPrefixes.some((p) => p === "" || p.startsWith(`${dir}/`) || `${dir}/`.startsWith(p));
  return Object.assign(matcher, { mayReinclude });
}

function globToRegExp(pattern: string): RegExp {
  let re = "";
  for (let i = 0; i < pattern.length; i += 1) {
    const c = pattern[i]!;
    if (c === "*" && pattern[i + 1] === "*") {
      const slash = pattern[i + 2] === "/";
      re += slash ? "(?:.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (c === "*") re += "[^/]*";
    else if (c === "?") re += "[^/]";
    else re += c.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`^${re}$`);
}

/** Every file of the build context, as relative POSIX paths, after .dockerignore. */
export async function buildContextFiles(contextDir: string): Promise<string[]> {
  let ignore: string;
  try {
    ignore = await readFile(path.join(contextDir, ".dockerignore"), "utf8");
  } catch {
    ignore = "";
  }
  const excluded = dockerignoreMatcher(ignore);
  const files: string[] = [];
  const walk = async (rel: string): Promise<void> => {
    for (const entry of await readdir(path.join(contextDir, rel), { withFileTypes: true })) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory()) {
        if (excluded(child) && !excluded.mayReinclude(child)) continue;
        await walk(child);
      } else if (!excluded(child)) files.push(child);
    }
  };
  await walk("");
  return files.sort();
}

export interface ReplayOptions {
  dockerfile: Dockerfile;
  /** The build context (the repository). */
  contextDir: string;
  /** Stage name -> the directory standing for its filesystem root; filled as stages replay. */
  roots: Map<string, string>;
  /** Where this stage's root goes. */
  root: string;
  /** PATH and anything else RUN commands need besides the stage's ENV. */
  runEnv: Record<string, string>;
  /** Skip RUN instructions (for a stage whose outputs other stages copy only from the context). */
  skipRun?: boolean;
  /** COPY --from moves the earlier stage's files instead of copying them (it is not used again). */
  moveFromStages?: boolean;
  onRun?: (command: string) => void;
}

export interface ReplayedStage {
  /** The host directory of the stage's final WORKDIR. */
  workdir: string;
  env: Record<string, string>;
  user: string | undefined;
  entrypoint: string[] | undefined;
}

/** Replays one stage's instructions; container paths map to `root` (so /app is root/app). */
export async function replayStage(stageName: string, opts: ReplayOptions): Promise<ReplayedStage> {
  const stage = opts.dockerfile.stages.find((s) => s.name === stageName);
  if (!stage) throw new Error(`Dockerfile has no stage ${stageName}`);
  const contextFiles = await buildContextFiles(opts.contextDir);
  const contextSet = new Set(contextFiles);
  const host = (root: string, containerPath: string, workdir: string) => path.join(root, path.posix.resolve(workdir, containerPath));
  let workdir = "/";
  const env: Record<string, string> = {};
  let user: string | undefined;
  let entrypoint: string[] | undefined;
  await mkdir(opts.root, { recursive: true });
  for (const ins of stage.instructions) {
    switch (ins.keyword) {
      case "WORKDIR":
        workdir = path.posix.resolve(workdir, ins.args);
        await mkdir(host(opts.root, ".", workdir), { recursive: true });
        break;
      case "ENV":
        Object.assign(env, parseEnv(ins.args));
        break;
      case "USER":
        user = ins.args;
        break;
      case "ENTRYPOINT":
        entrypoint = execForm(ins.args) ?? ["/bin/sh", "-c", ins.args];
        break;
      case "COPY": {
        const { flags, rest } = splitFlags(ins.args);
        const parts = rest.split(" ");
        const dest = parts.pop()!;
        const destIsDir = dest.endsWith("/") || parts.length > 1;
        for (const src of parts) {
          let from: string;
          if (flags.from !== undefined) {
            const fromRoot = opts.roots.get(flags.from);
            if (!fromRoot) throw new Error(`Dockerfile line ${ins.line}: stage ${flags.from} has not been replayed`);
            from = path.join(fromRoot, src);
          } else {
            const rel = path.posix.normalize(src).replace(/^\.\/|\/$/g, "");
            const inside = contextFiles.filter((f) => f === rel || f.startsWith(`${rel}/`));
            if (inside.length === 0) {
              throw new Error(`Dockerfile line ${ins.line}: COPY ${src}: not in the build context (check .dockerignore)`);
            }
            from = path.join(opts.contextDir, rel);
          }
          const isDir = (await stat(from)).isDirectory();
          const target = host(opts.root, destIsDir && !isDir ? path.posix.join(dest, path.posix.basename(src)) : dest, workdir);
          await mkdir(path.dirname(target), { recursive: true });
          const contextRel = (p: string) => path.relative(opts.contextDir, p).split(path.sep).join("/");
          if (flags.from !== undefined && opts.moveFromStages) {
            // The earlier stage is not needed again: moving its files is the same copy, faster.
            await rename(from, target);
            continue;
          }
          await cp(from, target, {
            recursive: true,
            // A context directory brings only the files .dockerignore lets through.
            filter: flags.from !== undefined ? undefined : async (p) => ((await stat(p)).isDirectory() ? true : contextSet.has(contextRel(p))),
          });
        }
        break;
      }
      case "RUN": {
        if (opts.skipRun) break;
        const { rest } = splitFlags(ins.args);
        const command = rest;
        opts.onRun?.(command);
        await runShell(command, host(opts.root, ".", workdir), { ...opts.runEnv, ...env }, ins.line);
        break;
      }
      case "ARG":
      case "LABEL":
      case "EXPOSE":
      case "CMD":
      case "STOPSIGNAL":
        break;
      default:
        throw new Error(`Dockerfile line ${ins.line}: the contract replay does not know ${ins.keyword}; teach standins/dockerfile.ts`);
    }
  }
  opts.roots.set(stageName, opts.root);
  return { workdir: host(opts.root, ".", workdir), env, user, entrypoint };
}

function runShell(command: string, cwd: string, env: Record<string, string>, line: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn("/bin/sh", ["-c", command], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let output = "";
    child.stdout.on("data", (d: Buffer) => (output += d.toString()));
    child.stderr.on("data", (d: Buffer) => (output += d.toString()));
    child.on("error", reject);
    child.on("close", (code) =>
      code === 0 ? resolve() : reject(new Error(`Dockerfile line ${line}: RUN ${command} exited ${code}:\n${output.slice(-4000)}`)),
    );
  });
}

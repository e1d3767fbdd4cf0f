// The rules Dockerfile.cloudrun and .dockerignore must keep (syntax is linted separately by
// `npm run lint:docker`): multi-stage, a pinned Node 24 slim base that matches the Node the tests
// run on, production dependencies only in the runtime, a non-root user, an exec-form entrypoint
// so SIGTERM reaches Node, and no way for credentials or local data into the image.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  buildContextFiles,
  dockerignoreMatcher,
  execForm,
  parseDockerfile,
  parseEnv,
  splitFlags,
  type Dockerfile,
  type Stage,
} from "../../standins/dockerfile.ts";
import { ROOT } from "../support/run-job.ts";

let dockerfile: Dockerfile;
let runtime: Stage;
let pkg: { engines: { node: string }; devDependencies: Record<string, string> };
let contextFiles: string[];
let ignored: (relativePath: string) => boolean;

beforeAll(async () => {
  dockerfile = parseDockerfile(await readFile(path.join(ROOT, "Dockerfile.cloudrun"), "utf8"));
  runtime = dockerfile.stages.at(-1)!;
  pkg = JSON.parse(await readFile(path.join(ROOT, "package.json"), "utf8"));
  contextFiles = await buildContextFiles(ROOT);
  ignored = dockerignoreMatcher(await readFile(path.join(ROOT, ".dockerignore"), "utf8"));
});

const copies = (stage: Stage) =>
  stage.instructions
    .filter((i) => i.keyword === "COPY" || i.keyword === "ADD")
    .map((i) => {
      const { flags, rest } = splitFlags(i.args);
      const parts = rest.split(" ");
      return { keyword: i.keyword, from: flags.from, sources: parts.slice(0, -1), dest: parts.at(-1)!, line: i.line };
    });
const runs = (stage: Stage) => stage.instructions.filter((i) => i.keyword === "RUN").map((i) => splitFlags(i.args).rest);

describe("Dockerfile.cloudrun", () => {
  it("has a build stage with dev dependencies and a last stage named runtime", () => {
    expect(dockerfile.stages.length).toBeGreaterThanOrEqual(2);
    expect(runtime.name).toBe("runtime");
    const build = dockerfile.stages.find((s) => s.name === "build");
    expect(build && runs(build)).toContainEqual(expect.stringMatching(/^npm ci(?! .*--omit=dev)/));
  });

  it("builds every stage on a pinned Node slim image of the same version as the tests' Node (the node devDependency)", () => {
    const engineMajor = /^>=(\d+)/.exec(pkg.engines.node)![1];
    const testNode = pkg.devDependencies.node!;
    for (const stage of dockerfile.stages) {
      const m = /^node:(\d+)\.(\d+)\.(\d+)-(\w+)-slim$/.exec(stage.base);
      expect(m, `FROM ${stage.base} (stage ${stage.name})`).not.toBeNull();
      expect(m![1]).toBe(engineMajor);
      expect(`${m![1]}.${m![2]}.${m![3]}`).toBe(testNode);
    }
  });

  it("gives the runtime its node_modules from a stage that ran npm ci --omit=dev, and installs nothing itself", () => {
    const modules = copies(runtime).find((c) => c.sources.some((s) => s.endsWith("node_modules")));
    expect(modules?.from).toBeDefined();
    const installer = dockerfile.stages.find((s) => s.name === modules!.from)!;
    expect(runs(installer)).toContainEqual(expect.stringMatching(/^npm ci --omit=dev\b/));
    expect(runs(installer).filter((r) => /\bnpm (ci|install|i)\b/.test(r) && !/--omit=dev/.test(r))).toEqual([]);
    expect(runs(runtime)).toEqual([]);
  });

  it("runs the runtime as a non-root user, with an exec-form ENTRYPOINT that starts node on the job", () => {
    const user = runtime.instructions.filter((i) => i.keyword === "USER").at(-1)?.args;
    expect(user).toBeDefined();
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    const entrypoints = runtime.instructions.filter((i) => i.keyword === "ENTRYPOINT");
    expect(entrypoints).toHaveLength(1);
    expect(execForm(entrypoints[0]!.args)).toEqual(["node", "src/main.ts"]);
    // USER comes before ENTRYPOINT, so nothing after it runs as root.
    expect(runtime.instructions.findIndex((i) => i.keyword === "USER")).toBeLessThan(runtime.instructions.findIndex((i) => i.keyword === "ENTRYPOINT"));
  });

  it("copies named paths only: never the whole context, never credentials, never ADD", () => {
    for (const stage of dockerfile.stages) {
      for (const c of copies(stage)) {
        expect(c.keyword, `line ${c.line}`).toBe("COPY");
        if (c.from !== undefined) continue;
        for (const source of c.sources) {
          expect(source, `line ${c.line}`).not.toMatch(
            /^\.\/?$|^\*|\.env|\.pem$|\.key$|credential|service-account|gcloud|\.git\b|node_modules|^data\b|^test\b|^bench\b/,
          );
          // Every context path the Dockerfile copies is in the build context .dockerignore leaves.
          const rel = source.replace(/^\.\/|\/$/g, "");
          expect(
            contextFiles.some((f) => f === rel || f.startsWith(`${rel}/`)),
            `COPY ${source} (line ${c.line}) is not in the build context`,
          ).toBe(true);
        }
      }
    }
  });

  it("sets no credential in ENV or ARG: Application Default Credentials come from the platform at run time", () => {
    const names = [
      ...Object.keys(dockerfile.args),
      ...dockerfile.stages.flatMap((s) => s.instructions.filter((i) => i.keyword === "ENV").flatMap((i) => Object.keys(parseEnv(i.args)))),
      ...dockerfile.stages.flatMap((s) => s.instructions.filter((i) => i.keyword === "ARG").map((i) => i.args.split("=")[0]!)),
    ];
    expect(names.length).toBeGreaterThan(0);
    for (const name of names) expect(name).not.toMatch(/CREDENTIALS|TOKEN|SECRET|PASSWORD|_KEY$|^KEY/i);
  });

  it("sets the runtime environment the job expects: production, JSON logs, fewer malloc arenas", () => {
    const env = Object.assign({}, ...runtime.instructions.filter((i) => i.keyword === "ENV").map((i) => parseEnv(i.args)));
    expect(env).toMatchObject({ NODE_ENV: "production", LOG_FORMAT: "json", MALLOC_ARENA_MAX: "2" });
    expect(env).not.toHaveProperty("TARGET_PAIR");
  });
});

describe(".dockerignore", () => {
  it.each([
    ".git/config",
    "node_modules/pino/package.json",
    "data/warehouse.duckdb",
    "bench/run.json",
    "test/unit/config.test.ts",
    ".env",
    "src/.env",
    "key.pem",
    "src/gcp/service-account.json",
    "sa-credentials.json",
    "README.md",
    "scripts/operator/deploy.sh",
  ])("leaves %s out of the build context", (file) => expect(ignored(file)).toBe(true));

  it.each(["package.json", "package-lock.json", "tsconfig.json", "scripts/dev/postinstall.mjs", "src/main.ts", "src/warehouse/duckdb.ts", "stages/index.ts"])(
    "keeps %s in the build context",
    (file) => expect(ignored(file)).toBe(false),
  );

  it("gives a build context of the sources and the lockfile only", () => {
    const tops = [...new Set(contextFiles.map((f) => f.split("/")[0]))].sort();
    expect(tops).toEqual(["package-lock.json", "package.json", "scripts", "src", "stages", "tsconfig.json"]);
    expect(contextFiles.filter((f) => f.startsWith("scripts/"))).toEqual(["scripts/dev/postinstall.mjs"]);
  });
});

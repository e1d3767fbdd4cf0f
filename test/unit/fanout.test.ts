// Which pairs a task builds (TARGET_PAIR or PAIRS split by CLOUD_RUN_TASK_INDEX), through the
// real configuration parser, and the loop that builds them.
import { Writable } from "node:stream";
import { describe, expect, it } from "vitest";
import { parseConfig, type HostFacts } from "../../src/config.ts";
import { PAIRS } from "../../src/constants.ts";
import { ConfigError } from "../../src/errors.ts";
import { pairsForTask, selectTaskPairs } from "../../src/config/pairs.ts";
import { buildTaskPairs } from "../../src/fanout.ts";
import { createLogger, loggerBase } from "../../src/log.ts";
import { logFirstWarehouseRequest } from "../../src/startup.ts";

const host: HostFacts = {
  cpus: { value: 4, source: "test" },
  memoryLimit: { value: 12 * 1024 ** 3, source: "test" },
  stdoutIsTty: false,
  cwd: "/app",
  tmpDir: "/tmp",
};

function problemsFor(env: Record<string, string>): readonly string[] {
  try {
    parseConfig(env, host);
  } catch (err) {
    if (err instanceof ConfigError) return err.problems;
    throw err;
  }
  return [];
}

/** A logger whose JSON lines are collected in `lines`. */
function capturingLogger(base: Record<string, unknown> = {}) {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split("\n").filter(Boolean)) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { log: createLogger({ level: "info", format: "json", base, destination }), lines };
}

describe("which pairs a task builds", () => {
  it("builds TARGET_PAIR alone when PAIRS is not set", () => {
    const c = parseConfig({ TARGET_PAIR: "gbpjpy" }, host);
    expect(c.pair).toBe("gbpjpy");
    expect(c.pairs).toEqual(["gbpjpy"]);
    expect(c.pairSource).toBe("TARGET_PAIR");
  });

  it("gives task i of n the pairs at positions i, i+n, ... of PAIRS, so every pair is built exactly once", () => {
    const list = "eurusd gbpusd usdjpy usdchf audusd usdcad nzdusd";
    const taken = [0, 1, 2].map((i) => parseConfig({ PAIRS: list, CLOUD_RUN_TASK_INDEX: String(i), CLOUD_RUN_TASK_COUNT: "3" }, host).pairs);
    expect(taken).toEqual([
      ["eurusd", "usdchf", "nzdusd"],
      ["gbpusd", "audusd"],
      ["usdjpy", "usdcad"],
    ]);
    expect(taken.flat().sort()).toEqual(list.split(" ").sort());
  });

  it("gives task i the i-th pair of PAIRS=all with 28 tasks", () => {
    for (const i of [0, 13, 27]) {
      const c = parseConfig({ PAIRS: "all", CLOUD_RUN_TASK_INDEX: String(i), CLOUD_RUN_TASK_COUNT: "28" }, host);
      expect(c.pairs).toEqual([PAIRS[i]]);
      expect(c.pair).toBe(PAIRS[i]);
      expect(c.pairsListed).toBe(28);
    }
  });

  it("accepts pairs separated by commas, spaces or both, and builds them all in a single task", () => {
    expect(parseConfig({ PAIRS: "eurusd,gbpusd  usdjpy, audusd" }, host).pairs).toEqual(["eurusd", "gbpusd", "usdjpy", "audusd"]);
  });

  it("refuses TARGET_PAIR and PAIRS together, naming both values", () => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", PAIRS: "gbpusd usdjpy" })).toEqual([
      expect.stringMatching(/^TARGET_PAIR\/PAIRS: expected one of them, not both \(got TARGET_PAIR="eurusd" and PAIRS="gbpusd usdjpy"\)/),
    ]);
  });

  it("refuses TARGET_PAIR with several tasks instead of building the same pair in every task", () => {
    expect(problemsFor({ TARGET_PAIR: "eurusd", CLOUD_RUN_TASK_COUNT: "4", CLOUD_RUN_TASK_INDEX: "1" })).toEqual([
      expect.stringMatching(/^CLOUD_RUN_TASK_COUNT: expected 1 with TARGET_PAIR.*\(got 4\); every task would build eurusd/),
    ]);
  });

  it("refuses more tasks than listed pairs instead of letting tasks build nothing", () => {
    expect(problemsFor({ PAIRS: "eurusd gbpusd", CLOUD_RUN_TASK_COUNT: "3", CLOUD_RUN_TASK_INDEX: "2" })).toEqual([
      expect.stringMatching(/^CLOUD_RUN_TASK_COUNT: expected at most one task per pair listed in PAIRS \(2\) \(got 3\); .*--tasks 2 or fewer$/),
    ]);
  });

  it.each([
    ["eurusd EURGBP", /^PAIRS: expected six lower-case letters .*did you mean eurgbp/],
    ["eurusd abcdef", /^PAIRS: expected one of eurusd gbpusd .*\(got "abcdef"\)$/],
    ["eurusd gbpusd eurusd", /^PAIRS: expected each pair once \(got eurusd twice/],
    ["eurusd;drop", /^PAIRS: expected six lower-case letters.*\(got "eurusd;drop"\)$/],
    [",", /^PAIRS: expected pairs separated by spaces or commas, or "all"/],
  ])("rejects PAIRS=%j with a message naming what is accepted", (pairs, pattern) => {
    const problems = problemsFor({ PAIRS: pairs });
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(pattern);
  });

  it("refuses a task index outside the task count", () => {
    expect(selectTaskPairs({ TARGET_PAIR: undefined, PAIRS: "all", taskIndex: 28, taskCount: 28 }).problems).toEqual([
      expect.stringMatching(/^CLOUD_RUN_TASK_INDEX: expected a task index below CLOUD_RUN_TASK_COUNT=28 \(got "28"\)$/),
    ]);
  });

  it("never defaults a pair: with neither variable the problem names both ways to set one", () => {
    const problems = problemsFor({ CLOUD_RUN_TASK_COUNT: "3" });
    expect(problems).toEqual([expect.stringMatching(/^TARGET_PAIR: expected .*--update-env-vars TARGET_PAIR=<pair> \(or set PAIRS .*\) \(got nothing\)$/)]);
  });

  it("gives every pair to exactly one task, for any task count from 1 to 28", () => {
    for (let n = 1; n <= PAIRS.length; n += 1) {
      const all = Array.from({ length: n }, (_, i) => pairsForTask(PAIRS, i, n)).flat();
      expect(all.sort()).toEqual([...PAIRS].sort());
    }
  });
});

describe("log fields of a task", () => {
  it("carry job, execution, task index and attempt, and the pair on each pair's lines", () => {
    const env = {
      PAIRS: "eurusd gbpusd usdjpy",
      CLOUD_RUN_JOB: "bqx-ml-pipeline",
      CLOUD_RUN_EXECUTION: "bqx-ml-pipeline-x7k2p",
      CLOUD_RUN_TASK_INDEX: "0",
      CLOUD_RUN_TASK_COUNT: "2",
      CLOUD_RUN_TASK_ATTEMPT: "1",
    };
    const config = parseConfig(env, host);
    expect(config.pairs).toEqual(["eurusd", "usdjpy"]);
    expect(loggerBase(config)).toEqual({ job: "bqx-ml-pipeline", execution: "bqx-ml-pipeline-x7k2p", task: 0, attempt: 1 });
    const single = parseConfig({ ...env, PAIRS: "eurusd gbpusd" }, host);
    expect(loggerBase(single)).toEqual({ pair: "eurusd", job: "bqx-ml-pipeline", execution: "bqx-ml-pipeline-x7k2p", task: 0, attempt: 1 });
  });
});

describe("building a task's pairs", () => {
  const config = parseConfig({ PAIRS: "eurusd gbpusd usdjpy" }, host);

  it("runs each pair with its own config and a logger naming the pair, and exits 0 when all were built", async () => {
    const { log, lines } = capturingLogger(loggerBase(config));
    const seen: string[] = [];
    const code = await buildTaskPairs({
      config,
      log,
      signal: new AbortController().signal,
      build: async (c, l) => {
        seen.push(`${c.pair}:${c.pairs.join(",")}`);
        l.info("stage extract: started");
        return { exitCode: 0 };
      },
    });
    expect(code).toBe(0);
    expect(seen).toEqual(["eurusd:eurusd", "gbpusd:gbpusd", "usdjpy:usdjpy"]);
    expect(lines.filter((l) => l.message === "stage extract: started").map((l) => l.pair)).toEqual(["eurusd", "gbpusd", "usdjpy"]);
    expect(lines.at(-1)).toMatchObject({ severity: "INFO", message: "task 0 of 1: built 3 of 3 (eurusd, gbpusd, usdjpy)" });
  });

  it("goes on after a failed pair, then exits 1 naming it", async () => {
    const { log, lines } = capturingLogger();
    const code = await buildTaskPairs({
      config,
      log,
      signal: new AbortController().signal,
      build: async (c) => (c.pair === "gbpusd" ? { exitCode: 1, failedStage: "extract" } : { exitCode: 0 }),
    });
    expect(code).toBe(1);
    expect(lines.at(-1)).toMatchObject({
      severity: "ERROR",
      failed: ["gbpusd"],
      built: ["eurusd", "usdjpy"],
      message: "task 0 of 1: built 2 of 3 (eurusd, usdjpy); failed: gbpusd in extract",
    });
  });

  it("stops at an interruption and exits 130, listing the pairs not started", async () => {
    const { log, lines } = capturingLogger();
    const controller = new AbortController();
    const code = await buildTaskPairs({
      config,
      log,
      signal: controller.signal,
      build: async () => {
        controller.abort(new Error("received SIGTERM"));
        return { exitCode: 130, failedStage: "extract" };
      },
    });
    expect(code).toBe(130);
    expect(lines.at(-1)).toMatchObject({ notStarted: ["gbpusd", "usdjpy"] });
  });
});

describe("the first warehouse request", () => {
  it("is logged once, with the milliseconds since the process started, and the call goes through", async () => {
    const { log, lines } = capturingLogger();
    const calls: string[] = [];
    const warehouse = {
      async preflight(datasets: readonly string[]) {
        calls.push(`preflight ${datasets.join(",")}`);
      },
      async listTables(dataset: string) {
        calls.push(`list ${dataset}`);
        return [];
      },
      async close() {},
    };
    const timed = logFirstWarehouseRequest(warehouse, log, () => 412.4);
    await timed.preflight(["a", "b"]);
    await timed.listTables("a");
    await timed.close();
    expect(calls).toEqual(["preflight a,b", "list a"]);
    expect(lines).toEqual([
      expect.objectContaining({ startupMs: 412, firstRequest: "preflight", message: "first warehouse request (preflight) 412 ms after the process started" }),
    ]);
  });
});

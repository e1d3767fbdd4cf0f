// Node's process warnings reach the job's logger as records, not Node's own lines on stderr; the
// known @google-cloud/storage 8 warning (googleapis/google-cloud-node#9185) only at debug.
import { EventEmitter } from "node:events";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { logProcessWarnings } from "../../src/log.ts";

type Listener = (...args: unknown[]) => void;
let saved: Listener[];
let records: Array<{ level: string; fields: Record<string, unknown>; message: string }>;
const log = {
  warn: (fields: Record<string, unknown>, message: string) => records.push({ level: "warn", fields, message }),
  debug: (fields: Record<string, unknown>, message: string) => records.push({ level: "debug", fields, message }),
};

beforeEach(() => {
  saved = process.listeners("warning") as Listener[];
  records = [];
});

afterEach(() => {
  process.removeAllListeners("warning");
  for (const l of saved) process.on("warning", l);
});

/** Process warnings are emitted on the next tick. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe("logProcessWarnings", () => {
  it("logs a warning as one record with its name and code, and takes Node's own printer away", async () => {
    logProcessWarnings(log as never);
    expect(process.listeners("warning")).toHaveLength(1);
    process.emitWarning("something odd", { type: "DeprecationWarning", code: "DEP0999" });
    await settle();
    expect(records).toEqual([{ level: "warn", fields: { warning: "DeprecationWarning", code: "DEP0999" }, message: "DeprecationWarning: something odd" }]);
  });

  it("logs the storage library's PassThrough listener warning at debug, naming the upstream issue", async () => {
    logProcessWarnings(log as never);
    // Named as the library's stream is: the warning names the emitter's class.
    class PassThrough extends EventEmitter {}
    const stream = new PassThrough();
    for (let i = 0; i < 11; i++) stream.on("error", () => undefined);
    await settle();
    expect(records).toHaveLength(1);
    expect(records[0]).toMatchObject({ level: "debug", fields: { warning: "MaxListenersExceededWarning", upstream: "googleapis/google-cloud-node#9185" } });
    expect(records[0]!.message).toMatch(
      /^MaxListenersExceededWarning: Possible EventEmitter memory leak detected\. 11 error listeners added to \[PassThrough\]/,
    );
  });

  it("keeps other listener-leak warnings at warn", async () => {
    logProcessWarnings(log as never);
    const emitter = new EventEmitter();
    for (let i = 0; i < 11; i++) emitter.on("data", () => undefined);
    await settle();
    expect(records.map((r) => r.level)).toEqual(["warn"]);
  });
});

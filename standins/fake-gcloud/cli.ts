// gcloud's command line as gcloud 578 parses it, for the commands the operator scripts use:
// the flags each command accepts (recorded from gcloud's own parser, global flags included),
// which take a value, and the groups of which at most one may be given. Anything else is
// refused the way gcloud refuses it (exit 2, the first line of gcloud's message).
import { GCLOUD_FLAGS } from "./recorded.ts";

export interface GcloudCommand {
  /** "run jobs describe" */
  command: string;
  positionals: string[];
  /** Flag (with its dashes) to the values given, in order; switches get "". */
  flags: Map<string, string[]>;
}

export class GcloudUsageError extends Error {
  readonly exitCode: number;
  constructor(message: string, exitCode = 2) {
    super(message);
    this.exitCode = exitCode;
  }
}

/** Integer flags and gcloud's bounds for them (arg_parsers.BoundedInt in flags.py). */
const BOUNDED_INTS: Record<string, number> = { "--tasks": 1, "--parallelism": 0, "--max-retries": 0 };

export function parseGcloud(argv: string[]): GcloudCommand {
  const words: string[] = [];
  for (const a of argv) {
    if (a.startsWith("-")) break;
    words.push(a);
  }
  const command = Object.keys(GCLOUD_FLAGS.commands)
    .filter((c) => c.split(" ").every((w, i) => words[i] === w))
    .sort((a, b) => b.length - a.length)[0];
  if (!command) throw new GcloudUsageError(`fake gcloud: unsupported command: gcloud ${argv.join(" ")}`, 98);
  const spec = GCLOUD_FLAGS.commands[command]!;
  const where = `gcloud.${command.replaceAll(" ", ".")}`;
  const rest = argv.slice(command.split(" ").length);
  const positionals: string[] = [];
  const flags = new Map<string, string[]>();
  const order: string[] = [];
  const unrecognized: string[] = [];
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i]!;
    if (!arg.startsWith("--")) {
      if (positionals.length < spec.positionals.length) positionals.push(arg);
      else unrecognized.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const kind = spec.flags[name];
    if (!kind) {
      unrecognized.push(arg);
      continue;
    }
    let value = "";
    if (kind === "value") {
      if (eq > 0) value = arg.slice(eq + 1);
      else if (i + 1 < rest.length && !rest[i + 1]!.startsWith("--")) value = rest[++i]!;
      else throw new GcloudUsageError(`ERROR: (${where}) argument ${name}: expected one argument`);
      const bound = BOUNDED_INTS[name];
      if (bound !== undefined) {
        if (!/^-?\d+$/.test(value)) throw new GcloudUsageError(`ERROR: (${where}) argument ${name}: Value must be an integer; received: ${value}`);
        if (Number(value) < bound)
          throw new GcloudUsageError(`ERROR: (${where}) argument ${name}: Value must be greater than or equal to ${bound}; received: ${value}`);
      }
    }
    flags.set(name, [...(flags.get(name) ?? []), value]);
    order.push(name);
  }
  if (unrecognized.length > 0) {
    // gcloud adds "(did you mean '--x'?)" after a misspelt flag; the stand-in does not guess.
    throw new GcloudUsageError(
      `ERROR: (${where}) unrecognized arguments:\n${unrecognized.map((u) => `  ${u}\n`).join("")}  To search the help text of gcloud commands, run:\n  gcloud help -- SEARCH_TERMS`,
    );
  }
  for (const group of spec.mutuallyExclusive) {
    const given = order.filter((f, i) => group.includes(f) && order.indexOf(f) === i);
    if (given.length > 1) {
      throw new GcloudUsageError(`ERROR: (${where}) argument ${given[1]}: At most one of ${group.join(" | ")} can be specified.`);
    }
  }
  return { command, positionals, flags };
}

/** The last value given for a flag. */
export const flagValue = (cmd: GcloudCommand, name: string): string | undefined => cmd.flags.get(name)?.at(-1);

// gcloud's --format for the formats the operator scripts use, as gcloud 578's resource
// printer renders them (recorded/gcloud-run-v1.json holds its real output):
// - value(k1,k2,...): one line, the keys' values separated by tabs; a key that is absent
//   prints as an empty field (so a wrong path yields an empty line, not an error);
//   keys are dotted JSON field names with [N] list indexes, or a quoted literal key.
// - json: the resource with sorted keys, indented by 2.
// - none: nothing.

/** The keys of a value(...) projection. */
function valueKeys(body: string): string[] {
  const keys: string[] = [];
  let current = "";
  let quoted = false;
  for (const ch of body) {
    if (ch === '"') quoted = !quoted;
    if (ch === "," && !quoted) {
      keys.push(current.trim());
      current = "";
    } else {
      current += ch;
    }
  }
  keys.push(current.trim());
  return keys.filter((k) => k !== "");
}

function lookup(resource: unknown, key: string): unknown {
  const literal = /^"(.*)"$/.exec(key);
  const steps: Array<string | number> = [];
  if (literal) {
    steps.push(literal[1]!);
  } else {
    for (const part of key.split(".")) {
      const m = /^([^[\]]+)((?:\[\d+\])*)$/.exec(part);
      if (!m) throw new Error(`fake gcloud: projection key ${JSON.stringify(key)} is beyond what the stand-in evaluates`);
      steps.push(m[1]!);
      for (const index of m[2]!.matchAll(/\[(\d+)\]/g)) steps.push(Number(index[1]));
    }
  }
  let value: unknown = resource;
  for (const step of steps) {
    if (value === null || typeof value !== "object") return undefined;
    value = (value as Record<string | number, unknown>)[step];
  }
  return value;
}

function scalar(value: unknown, key: string): string {
  if (value === undefined || value === null) return "";
  if (typeof value === "string") return value;
  if (typeof value === "number") return String(value);
  if (typeof value === "boolean") return value ? "True" : "False";
  throw new Error(`fake gcloud: value(${key}) is a list or an object; the stand-in does not print those`);
}

function sortedJson(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortedJson);
  if (value && typeof value === "object") {
    return Object.fromEntries(
      Object.keys(value)
        .sort()
        .map((k) => [k, sortedJson((value as Record<string, unknown>)[k])]),
    );
  }
  return value;
}

/** What `gcloud ... --format FORMAT` prints for one resource. */
export function formatResource(resource: unknown, format: string): string {
  if (format === "none") return "";
  if (format === "json") return `${JSON.stringify(sortedJson(resource), null, 2)}\n`;
  const value = /^value\((.*)\)$/s.exec(format.trim());
  if (!value) throw new Error(`fake gcloud: --format ${JSON.stringify(format)} is not emulated (value(...), json and none are)`);
  return `${valueKeys(value[1]!)
    .map((key) => scalar(lookup(resource, key), key))
    .join("\t")}\n`;
}

// What the real gcloud 578 and gsutil 5.37 printed, recorded once from their own code
// (recorded/README.md says how). The stand-ins answer from these shapes and texts.
import { readFileSync } from "node:fs";

export interface RecordedRun {
  argv: string[];
  exitCode: number;
  stdout: string;
  stderr: string;
}

interface FlagsFile {
  gcloud: string;
  commands: Record<string, { positionals: string[]; flags: Record<string, "value" | "switch">; mutuallyExclusive: string[][] }>;
}
interface GcloudRunsFile {
  gcloud: string;
  resources: Record<string, Record<string, unknown>>;
  runs: Record<string, RecordedRun>;
}
interface GsutilFile {
  gsutil: string;
  object: Record<string, unknown>;
  runs: Record<string, RecordedRun>;
}

const load = <T>(name: string): T => JSON.parse(readFileSync(new URL(`./recorded/${name}`, import.meta.url), "utf8")) as T;

export const GCLOUD_FLAGS = load<FlagsFile>("gcloud-flags.json");
export const GCLOUD = load<GcloudRunsFile>("gcloud-run-v1.json");
export const GSUTIL = load<GsutilFile>("gsutil-stat.json");

/** The names a recorded text was templated on (recorded/README.md). */
export interface Names {
  job?: string;
  execution?: string;
  project?: string;
  region?: string;
  projectNumber?: string;
}

/** A recorded text with its {job}, {execution}, {project}, {region}, {projectNumber} filled in. */
export function fill(text: string, names: Names): string {
  return text.replace(/\{(job|execution|project|region|projectNumber)\}/g, (whole, key: keyof Names) => names[key] ?? whole);
}

/** A recorded run's outputs for other names. */
export function replay(key: string, names: Names): RecordedRun {
  const run = GCLOUD.runs[key];
  if (!run) throw new Error(`fake gcloud: no recorded run "${key}"`);
  return { ...run, stdout: fill(run.stdout, names), stderr: fill(run.stderr, names) };
}

/** The first line of a recorded error: the stand-ins print it and leave out gcloud's usage text. */
export const firstLine = (text: string) => `${text.split("\n")[0]}\n`;

/** A deep copy of a recorded v1 resource. */
export const recordedResource = <T = Record<string, unknown>>(key: string): T => structuredClone(GCLOUD.resources[key]) as T;

// The emulated cloud's state, in files under $FAKE_CLOUD_DIR, shared by every stand-in call and
// by the detached processes that run executions: jobs.json (v1 Jobs by name), images.json
// (the registry), executions/<name>.json (v1 Executions), executions.jsonl (one line per
// finished execution, for the tests: what ran, with which environment, and how it ended).
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import path from "node:path";

export function stateDir(): string {
  const dir = process.env.FAKE_CLOUD_DIR;
  if (!dir) {
    process.stderr.write("fake cloud: FAKE_CLOUD_DIR is not set (the test must set it)\n");
    process.exit(97);
  }
  mkdirSync(path.join(dir, "executions"), { recursive: true });
  return dir;
}

export const readJson = <T>(file: string, fallback: T): T => (existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as T) : fallback);

/** Written whole and renamed into place: a reader never sees half a file. */
export function writeJson(file: string, value: unknown): void {
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(tmp, file);
}

export interface EnvVar {
  name: string;
  value?: string;
}
export interface Container {
  image: string;
  env?: EnvVar[];
  args?: string[];
  resources?: { limits?: Record<string, string> };
}
export interface TaskSpec {
  containers: Container[];
  maxRetries?: number;
  timeoutSeconds?: string;
  serviceAccountName?: string;
}
export interface ExecutionSpec {
  parallelism?: number;
  taskCount?: number;
  template: { spec: TaskSpec };
}
export interface Meta {
  name: string;
  namespace: string;
  /** Kubernetes' object UID (the recorded resources carry one). */
  uid?: string;
  selfLink?: string;
  generation?: number;
  creationTimestamp?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}
export interface Condition {
  type: string;
  status: string;
  message?: string;
  reason?: string;
  lastTransitionTime?: string;
}
/** A v1 (Knative) Job, as `gcloud run jobs describe` returns it. */
export interface Job {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  spec: { template: { metadata?: Record<string, unknown>; spec: ExecutionSpec } };
  status?: { conditions?: Condition[]; executionCount?: number; latestCreatedExecution?: Record<string, string>; observedGeneration?: number };
}
/** A v1 Execution, as `gcloud run jobs executions describe` returns it. */
export interface Execution {
  apiVersion: string;
  kind: string;
  metadata: Meta;
  spec: ExecutionSpec;
  status: {
    observedGeneration?: number;
    startTime?: string;
    completionTime?: string;
    conditions?: Condition[];
    runningCount?: number;
    succeededCount?: number;
    failedCount?: number;
    retriedCount?: number;
    logUri?: string;
  };
}

export const LOCATION_LABEL = "cloud.googleapis.com/location";
export const jobsFile = (dir: string) => path.join(dir, "jobs.json");
export const executionFile = (dir: string, name: string) => path.join(dir, "executions", `${name}.json`);
export const readJobs = (dir: string) => readJson<Record<string, Job>>(jobsFile(dir), {});
export const readExecution = (dir: string, name: string) => readJson<Execution | undefined>(executionFile(dir, name), undefined);

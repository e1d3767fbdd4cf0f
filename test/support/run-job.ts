// Runs the real entrypoint as a child process, the way Cloud Run runs the container.
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");

/** One JSON log line of the job (pino): a message and a severity on every line, a fix on a failure's; other fields vary by line. */
export interface JobLogLine {
  message?: string;
  severity?: string;
  fix?: string;
  [field: string]: unknown;
}

export interface JobRun {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** Parsed JSON log lines from stdout. */
  lines: JobLogLine[];
}

export function runJob(env: Record<string, string>, opts: { script?: string; timeoutMs?: number } = {}): Promise<JobRun> {
  const script = opts.script ?? path.join(ROOT, "src", "main.ts");
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [script], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_FORMAT: "json", ...env },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs ?? 300_000);
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      const lines = stdout
        .split("\n")
        .filter((l) => l.startsWith("{"))
        .map((l) => JSON.parse(l) as JobLogLine);
      resolve({ code, signal, stdout, stderr, lines });
    });
  });
}

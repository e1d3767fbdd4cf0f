// Local stand-ins for BigQuery, speaking the real wire protocols so the real client libraries can
// be driven offline: the REST v2 API (this file, node:http) and the Storage Read API
// (storage-read-standin.ts, gRPC). Both execute on a DuckDB warehouse file (standin-warehouse.ts).
//
//   const s = await startBigQueryStandIns({ warehouse: "data/sample.duckdb", latencyMs: 2000 });
//   new BigQuery({ projectId: s.project, apiEndpoint: s.bigqueryEndpoint, authClient: <token client> })
//   s.faults.restErrors.push({ method: "jobs.insert", status: 503, reason: "backendError", count: 2 });
//   ...; await s.close();
//
// REST methods served (what @google-cloud/bigquery 9 sends for the adapter and for query()):
// datasets.get, jobs.insert, jobs.get, jobs.cancel, jobs.query, jobs.getQueryResults (long poll on timeoutMs,
// pageToken paging, formatOptions.useInt64Timestamp). A query job materialises its result into
// `_job_results.anon_<job id>` and reports it as configuration.query.destinationTable, as
// BigQuery does with anonymous result tables; the Storage Read stand-in reads those.
// No vitest imports: `npm run standins` loads this from a plain Node process.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { RESULTS_DATASET, StandInError, StandInWarehouse, bigQueryType, restValue, type QueryParameter, type ResultColumn } from "./standin-warehouse.ts";
import { startStorageReadStandIn } from "./storage-read-standin.ts";
import { rng as seeded } from "./rng.ts";

export interface StandInFaults {
  /** Added to every query job's run time: a number, or [min, max] drawn from the seeded generator. */
  latencyMs: number | readonly [number, number];
  /** Added to every CreateReadSession (the service plans the session's streams): a number, or [min, max]. */
  sessionLatencyMs: number | readonly [number, number];
  /** Fail the next `count` REST calls of `method` ("jobs.insert", ..., or "*" for any). */
  restErrors: Array<{ method: string; status: number; reason: string; count: number; message?: string }>;
  /** Fraction of REST calls failing with 429 rateLimitExceeded or 503 backendError (seeded). */
  restErrorRate: number;
  /** Datasets whose reads fail with 403 accessDenied (REST) / PERMISSION_DENIED (gRPC). */
  accessDeniedDatasets: Set<string>;
  /** "dataset.table" names answered with 404 notFound even if they exist. */
  missingTables: Set<string>;
  /** "dataset.table" names whose query jobs never finish, and whose read sessions never answer (until cancelled). */
  hangingTables: Set<string>;
  /** The next `count` query jobs finish with this errorResult reason (e.g. backendError). */
  jobFailures: Array<{ reason: string; count: number; message?: string }>;
  /** Fail the next `count` gRPC calls of `method` with status `code` before any data. */
  grpcErrors: Array<{ method: "CreateReadSession" | "ReadRows"; code: number; count: number; message?: string }>;
  /**
   * Break the next `count` ReadRows streams after `afterBatches` batches: with an UNAVAILABLE or
   * INTERNAL (RST_STREAM) status, by cutting the TCP connection ("disconnect"), or by going
   * silent without ending the stream ("stall").
   */
  readRowsDrops: Array<{ afterBatches: number; mode: "unavailable" | "internal" | "disconnect" | "stall"; count: number }>;
  /** CreateReadSession fails with PERMISSION_DENIED for bigquery.readsessions.create. */
  readSessionDenied: boolean;
}

export interface StandInRequest {
  api: "bigquery" | "storage";
  method: string;
  /** HTTP status, or the gRPC status name ("OK", "UNAVAILABLE", ...). */
  status: number | string;
  at: number;
  jobId?: string;
  query?: string;
  dataset?: string;
  table?: string;
  stream?: string;
  offset?: number;
  rows?: number;
  /** CreateReadSession: the streams the session got. */
  streams?: number;
}

export interface StandInOptions {
  /** DuckDB file whose schemas are the datasets; opened read-only. */
  warehouse: string;
  project?: string;
  location?: string;
  faults?: Partial<StandInFaults>;
  latencyMs?: number | readonly [number, number];
  sessionLatencyMs?: number | readonly [number, number];
  seed?: number;
  /** Rows per getQueryResults page when the client does not say (BigQuery: ~10 MB). */
  pageRows?: number;
  /** Rows per Arrow record batch on ReadRows. */
  batchRows?: number;
  /** A read session gets one stream per this many rows, up to its max_stream_count (default 10,000). */
  streamRows?: number;
  /** How long a job's result table stays after it was read to the end (default 30 s). */
  resultRetentionMs?: number;
}

export interface StandIns {
  /** For BigQuery's apiEndpoint / BIGQUERY_ENDPOINT. */
  bigqueryEndpoint: string;
  /** For BIGQUERY_STORAGE_ENDPOINT (plaintext gRPC). */
  storageEndpoint: string;
  project: string;
  location: string;
  /** Mutable: change it between calls. */
  faults: StandInFaults;
  /** Every request served, in order. */
  requests: StandInRequest[];
  close(): Promise<void>;
}

/** What the REST and gRPC halves share. */
export interface StandInContext {
  warehouse: StandInWarehouse;
  faults: StandInFaults;
  requests: StandInRequest[];
  random: () => number;
  batchRows: number;
  /** Rows per read stream: a session gets ceil(rows / streamRows) streams, up to what it asks for. */
  streamRows: number;
  /** Called when a result table has been read to its end. */
  resultRead(table: string): void;
}

interface Job {
  id: string;
  location: string;
  query: string;
  created: number;
  state: "RUNNING" | "DONE";
  errorResult: { reason: string; message: string } | undefined;
  table: string;
  columns: ResultColumn[];
  rows: number;
  done: Promise<void>;
  finish: () => void;
}


/** Takes one use of the first matching fault entry; entries vanish when used up. */
export function takeFault<T extends { count: number }>(list: T[], match: (f: T) => boolean): T | undefined {
  const i = list.findIndex((f) => f.count > 0 && match(f));
  if (i < 0) return undefined;
  const f = list[i] as T;
  f.count -= 1;
  if (f.count <= 0) list.splice(i, 1);
  return f;
}

const HTTP_STATUS_NAMES: Readonly<Record<number, string>> = { 400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND", 409: "ALREADY_EXISTS", 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE" };
const REASON_STATUS: Readonly<Record<string, number>> = { invalidQuery: 400, invalid: 400, notFound: 404, accessDenied: 403, backendError: 503, internalError: 500, rateLimitExceeded: 429, resourcesExceeded: 400, stopped: 400 };

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function errorBody(e: StandInError): unknown {
  return { error: { code: e.status, message: e.message, errors: [{ message: e.message, domain: "global", reason: e.reason }], status: HTTP_STATUS_NAMES[e.status] ?? "UNKNOWN" } };
}

async function readBody(req: http.IncomingMessage): Promise<Record<string, unknown>> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  if (chunks.length === 0) return {};
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8")) as Record<string, unknown>;
  } catch {
    throw new StandInError(400, "parseError", "Parse Error");
  }
}

class RestStandIn {
  private readonly ctx: StandInContext;
  private readonly pageRows: number;
  private readonly jobs = new Map<string, Job>();

  constructor(ctx: StandInContext, pageRows: number) {
    this.ctx = ctx;
    this.pageRows = pageRows;
  }

  private get wh(): StandInWarehouse {
    return this.ctx.warehouse;
  }

  private latency(): number {
    const l = this.ctx.faults.latencyMs;
    if (typeof l === "number") return l;
    return l[0] + this.ctx.random() * (l[1] - l[0]);
  }

  /** Permission and existence checks BigQuery makes before it runs anything. */
  private checkAccess(datasets: string[], tables: Array<{ dataset: string; table: string }>): void {
    const p = this.wh.project;
    for (const d of datasets) {
      if (this.ctx.faults.accessDeniedDatasets.has(d)) {
        throw new StandInError(403, "accessDenied", `Access Denied: Dataset ${p}:${d}: Permission bigquery.tables.getData denied on dataset ${p}:${d} (or it may not exist).`);
      }
      if (!this.wh.hasDataset(d)) throw new StandInError(404, "notFound", `Not found: Dataset ${p}:${d} was not found in location ${this.wh.location}`);
    }
    for (const { dataset, table } of tables) {
      if (this.ctx.faults.missingTables.has(`${dataset}.${table}`) || !this.wh.hasTable(dataset, table)) {
        throw new StandInError(404, "notFound", `Not found: Table ${p}:${dataset}.${table} was not found in location ${this.wh.location}`);
      }
    }
  }

  /** Creates a job; access problems throw (HTTP error), query problems fail the job. */
  private startJob(id: string, location: string, query: string, params: QueryParameter[]): Job {
    if (this.jobs.has(id)) throw new StandInError(409, "duplicate", `Already Exists: Job ${this.wh.project}:${location}.${id}`);
    let finish = () => {};
    const done = new Promise<void>((resolve) => (finish = resolve));
    const job: Job = { id, location, query, created: Date.now(), state: "RUNNING", errorResult: undefined, table: `anon_${id.replace(/[^A-Za-z0-9_]/g, "_")}`, columns: [], rows: 0, done, finish };
    const complete = (errorResult?: { reason: string; message: string }) => {
      if (job.state === "DONE") return;
      job.state = "DONE";
      job.errorResult = errorResult;
      job.finish();
    };
    this.jobs.set(id, job);
    let translated;
    try {
      translated = this.wh.translate(query, params);
      this.checkAccess(translated.datasets, translated.tables);
    } catch (err) {
      if (err instanceof StandInError && err.status === 403) {
        this.jobs.delete(id);
        throw err;
      }
      complete({ reason: err instanceof StandInError ? err.reason : "invalidQuery", message: (err as Error).message });
      return job;
    }
    if (translated.tables.some((t) => this.ctx.faults.hangingTables.has(`${t.dataset}.${t.table}`))) return job;
    const injected = takeFault(this.ctx.faults.jobFailures, () => true);
    const wait = new Promise((resolve) => setTimeout(resolve, this.latency()).unref());
    const run = injected
      ? Promise.resolve()
      : this.wh.materialize(job.table, translated).then((r) => {
          job.columns = r.columns;
          job.rows = r.rows;
        });
    void Promise.all([run, wait]).then(
      () => complete(injected ? { reason: injected.reason, message: injected.message ?? `Injected ${injected.reason}` } : undefined),
      (err: Error) => complete({ reason: "invalidQuery", message: err.message.split("\n")[0] ?? err.message }),
    );
    return job;
  }

  private resource(job: Job): unknown {
    const p = this.wh.project;
    return {
      kind: "bigquery#job",
      id: `${p}:${job.location}.${job.id}`,
      jobReference: { projectId: p, jobId: job.id, location: job.location },
      configuration: { jobType: "QUERY", query: { query: job.query, useLegacySql: false, destinationTable: { projectId: p, datasetId: RESULTS_DATASET, tableId: job.table } } },
      status: job.state === "DONE" ? { state: "DONE", ...(job.errorResult ? { errorResult: job.errorResult, errors: [job.errorResult] } : {}) } : { state: "RUNNING" },
      statistics: { creationTime: String(job.created), startTime: String(job.created), query: { statementType: "SELECT", totalBytesProcessed: "0" } },
    };
  }

  private job(id: string): Job {
    const job = this.jobs.get(id);
    if (!job) throw new StandInError(404, "notFound", `Not found: Job ${this.wh.project}:${this.wh.location}.${id}`);
    return job;
  }

  private async waitFor(job: Job, timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([job.done, new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs).unref()))]);
    clearTimeout(timer);
  }

  /** The getQueryResults / jobs.query body for a job: not yet complete, its error, or a page of rows. */
  private async results(job: Job, kind: string, opts: { start: number; maxResults: number | undefined; int64Timestamps: boolean }): Promise<unknown> {
    const jobReference = { projectId: this.wh.project, jobId: job.id, location: job.location };
    if (job.state !== "DONE") return { kind, jobReference, jobComplete: false };
    if (job.errorResult) throw new StandInError(REASON_STATUS[job.errorResult.reason] ?? 400, job.errorResult.reason, job.errorResult.message);
    const schema = { fields: job.columns.map((c) => ({ name: c.name, type: bigQueryType(c.duckType)[1], mode: "NULLABLE" })) };
    const count = Math.min(opts.maxResults ?? this.pageRows, this.pageRows);
    const page = count > 0 && opts.start < job.rows ? await this.wh.page(job.table, opts.start, count) : [];
    const next = opts.start + page.length;
    return {
      kind,
      jobReference,
      jobComplete: true,
      schema,
      totalRows: String(job.rows),
      ...(page.length > 0 ? { rows: page.map((r) => ({ f: r.map((v) => ({ v: restValue(v, opts.int64Timestamps) })) })) } : {}),
      ...(page.length > 0 && next < job.rows ? { pageToken: String(next) } : {}),
      totalBytesProcessed: "0",
      cacheHit: false,
    };
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://standin");
    const entry: StandInRequest = { api: "bigquery", method: "unknown", status: 0, at: Date.now() };
    this.ctx.requests.push(entry);
    try {
      const m = /^\/bigquery\/v2\/projects\/([^/]+)\/(.+)$/.exec(url.pathname);
      if (!m) throw new StandInError(404, "notFound", `No such endpoint: ${url.pathname}`);
      const [, project, rest = ""] = m;
      const route = `${req.method} ${rest}`;
      const seg = rest.split("/").map(decodeURIComponent);
      entry.method =
        /^GET datasets\/[^/]+$/.test(route) ? "datasets.get"
        : route === "POST jobs" ? "jobs.insert"
        : /^GET jobs\/[^/]+$/.test(route) ? "jobs.get"
        : /^POST jobs\/[^/]+\/cancel$/.test(route) ? "jobs.cancel"
        : route === "POST queries" ? "jobs.query"
        : /^GET queries\/[^/]+$/.test(route) ? "jobs.getQueryResults"
        : "unknown";
      if (!String(req.headers.authorization ?? "").startsWith("Bearer ")) throw new StandInError(401, "unauthorized", "Request is missing required authentication credential.");
      const injected = takeFault(this.ctx.faults.restErrors, (f) => f.method === "*" || f.method === entry.method);
      if (injected) throw new StandInError(injected.status, injected.reason, injected.message ?? `Injected ${injected.reason}`);
      if (this.ctx.faults.restErrorRate > 0 && this.ctx.random() < this.ctx.faults.restErrorRate) {
        throw this.ctx.random() < 0.5 ? new StandInError(429, "rateLimitExceeded", "Exceeded rate limits: too many api requests per user per method") : new StandInError(503, "backendError", "Backend error.");
      }
      if (project !== this.wh.project) throw new StandInError(404, "notFound", `Not found: Project ${project}`);
      const body = req.method === "POST" ? await readBody(req) : {};
      const int64Timestamps = url.searchParams.get("formatOptions.useInt64Timestamp") === "true";
      switch (entry.method) {
        case "datasets.get": {
          const d = seg[1] ?? "";
          entry.dataset = d;
          this.checkAccess([d], []);
          return sendJson(res, 200, { kind: "bigquery#dataset", id: `${project}:${d}`, datasetReference: { projectId: project, datasetId: d }, location: this.wh.location });
        }
        case "jobs.insert": {
          const ref = (body.jobReference ?? {}) as { jobId?: string; location?: string };
          const query = ((body.configuration ?? {}) as { query?: { query?: string; queryParameters?: QueryParameter[] } }).query;
          if (!query?.query) throw new StandInError(400, "invalid", "Only query jobs are supported by the stand-in");
          const id = ref.jobId ?? `job_${Math.floor(this.ctx.random() * 2 ** 48).toString(36)}`;
          Object.assign(entry, { jobId: id, query: query.query });
          const job = this.startJob(id, ref.location ?? this.wh.location, query.query, query.queryParameters ?? []);
          return sendJson(res, 200, this.resource(job));
        }
        case "jobs.get":
          entry.jobId = seg[1];
          return sendJson(res, 200, this.resource(this.job(seg[1] ?? "")));
        case "jobs.cancel": {
          const job = this.job(seg[1] ?? "");
          entry.jobId = job.id;
          if (job.state !== "DONE") {
            job.state = "DONE";
            job.errorResult = { reason: "stopped", message: "Job execution was cancelled: User requested cancellation" };
            job.finish();
          }
          return sendJson(res, 200, { kind: "bigquery#jobCancelResponse", job: this.resource(job) });
        }
        case "jobs.query": {
          const text = String(body.query ?? "");
          const id = `query_${Math.floor(this.ctx.random() * 2 ** 48).toString(36)}`;
          Object.assign(entry, { jobId: id, query: text });
          const job = this.startJob(id, String(body.location ?? this.wh.location), text, (body.queryParameters as QueryParameter[] | undefined) ?? []);
          await this.waitFor(job, Number(body.timeoutMs ?? 10_000));
          const int64 = ((body.formatOptions ?? {}) as { useInt64Timestamp?: boolean }).useInt64Timestamp === true;
          const maxResults = body.maxResults === undefined ? undefined : Number(body.maxResults);
          return sendJson(res, 200, await this.results(job, "bigquery#queryResponse", { start: 0, maxResults, int64Timestamps: int64 }));
        }
        case "jobs.getQueryResults": {
          const job = this.job(seg[1] ?? "");
          entry.jobId = job.id;
          await this.waitFor(job, Number(url.searchParams.get("timeoutMs") ?? 10_000));
          const token = url.searchParams.get("pageToken") ?? url.searchParams.get("startIndex");
          const maxResults = url.searchParams.get("maxResults");
          return sendJson(res, 200, await this.results(job, "bigquery#getQueryResultsResponse", { start: token ? Number(token) : 0, maxResults: maxResults === null ? undefined : Number(maxResults), int64Timestamps }));
        }
        default:
          throw new StandInError(404, "notFound", `The stand-in does not serve ${route}`);
      }
    } catch (err) {
      const e = err instanceof StandInError ? err : new StandInError(500, "internalError", (err as Error).message);
      entry.status = e.status;
      if (!res.headersSent) sendJson(res, e.status, errorBody(e));
      return;
    } finally {
      if (entry.status === 0) entry.status = res.statusCode;
    }
  }
}

/** Starts the REST and Storage Read stand-ins on 127.0.0.1 over `opts.warehouse`. */
export async function startBigQueryStandIns(opts: StandInOptions): Promise<StandIns> {
  const project = opts.project ?? "bqx-standin";
  const location = opts.location ?? "US";
  const warehouse = await StandInWarehouse.open(opts.warehouse, project, location);
  const faults: StandInFaults = {
    latencyMs: opts.latencyMs ?? 0,
    sessionLatencyMs: opts.sessionLatencyMs ?? 0,
    restErrors: [],
    restErrorRate: 0,
    accessDeniedDatasets: new Set(),
    missingTables: new Set(),
    hangingTables: new Set(),
    jobFailures: [],
    grpcErrors: [],
    readRowsDrops: [],
    readSessionDenied: false,
    ...opts.faults,
  };
  const retentionMs = opts.resultRetentionMs ?? 30_000;
  const requests: StandInRequest[] = [];
  const ctx: StandInContext = {
    warehouse,
    faults,
    requests,
    random: seeded(opts.seed ?? 1),
    batchRows: opts.batchRows ?? 2048,
    streamRows: opts.streamRows ?? 10_000,
    resultRead: (table) => {
      setTimeout(() => void warehouse.dropResult(table).catch(() => {}), retentionMs).unref();
    },
  };
  const rest = new RestStandIn(ctx, opts.pageRows ?? 10_000);
  const server = http.createServer((req, res) => void rest.handle(req, res));
  server.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const storage = await startStorageReadStandIn(ctx);
  return {
    bigqueryEndpoint: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    storageEndpoint: storage.endpoint,
    project,
    location,
    faults,
    requests,
    async close() {
      await storage.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      warehouse.close();
    },
  };
}

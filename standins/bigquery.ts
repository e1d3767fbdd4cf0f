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
//
// As strict as BigQuery where a lenient stand-in would hide a bug in the job:
// - A job lives in a location (the one asked for, else the datasets'). jobs.get, getQueryResults
//   and cancel find it only with that `location`, or with none when it is in the US or EU
//   multi-region; otherwise 404 `Not found: Job <project>:<jobId>` (see `findJob`).
// - `useLegacySql` absent means legacy SQL, the REST API's default (see `legacySqlProblem`).
// - `faults.jobsCreateDenied`: jobs.insert and jobs.query answer 403 for bigquery.jobs.create.
// - A dry run (jobs.insert with configuration.dryRun) is checked like a query that runs (dialect,
//   permissions, tables, columns, types) and refused the way BigQuery refuses one, as the HTTP
//   error of jobs.insert itself; otherwise it answers a DONE job with statistics.totalBytesProcessed
//   and statistics.query.totalBytesProcessed (strings), reads no row and stores no job (jobs.get
//   on its id is a 404).
// `served` counts the table data handed out (getQueryResults rows of queries that read tables,
// ReadRows batches), apart from INFORMATION_SCHEMA rows: a plan must leave it at 0.
// No vitest imports: `npm run standins` loads this from a plain Node process.
import http from "node:http";
import type { AddressInfo } from "node:net";
import { RESULTS_DATASET, StandInError, StandInWarehouse, bigQueryType, restValue, type QueryParameter, type ResultColumn } from "./warehouse.ts";
import { startStorageReadStandIn } from "./storage-read.ts";
import { rng as seeded } from "./rng.ts";

export interface StandInFaults {
  /** Added to every query job's run time: a number, or [min, max] drawn from the seeded generator. */
  latencyMs: number | readonly [number, number];
  /** Added to every CreateReadSession (the service plans the session's streams): a number, or [min, max]. */
  sessionLatencyMs: number | readonly [number, number];
  /**
   * Fail the next `count` REST calls of `method` ("jobs.insert", ..., or "*" for any). With
   * `afterServing`, the call is carried out first and only its answer is replaced by the error:
   * an answer lost on the way back (a retried jobs.insert then meets its own job: 409).
   */
  restErrors: Array<{ method: string; status: number; reason: string; count: number; message?: string; afterServing?: boolean }>;
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
  /** The caller lacks bigquery.jobs.create on the project: jobs.insert and jobs.query answer 403. */
  jobsCreateDenied: boolean;
}

export interface StandInRequest {
  api: "bigquery" | "storage";
  method: string;
  /** HTTP status, or the gRPC status name ("OK", "UNAVAILABLE", ...). */
  status: number | string;
  at: number;
  jobId?: string;
  query?: string;
  /** jobs.insert / jobs.query: the useLegacySql the caller sent (undefined: absent, i.e. legacy). */
  useLegacySql?: boolean;
  dataset?: string;
  table?: string;
  stream?: string;
  offset?: number;
  rows?: number;
  /** CreateReadSession: the streams the session got. */
  streams?: number;
  /** jobs.insert: a dry run (no job stored), and the bytes it reported. */
  dryRun?: boolean;
  bytesProcessed?: number;
}

/** What the stand-ins handed out. */
export interface Served {
  /** Rows of warehouse tables: getQueryResults / jobs.query pages of queries that read tables, and ReadRows. */
  tableRows: number;
  /** Their bytes: the REST rows' JSON, the ReadRows Arrow batches. */
  tableBytes: number;
  /** Rows of INFORMATION_SCHEMA listings (discovery), not table data. */
  metadataRows: number;
  /** Query jobs running now, and the most that ran at once (how concurrent the client really was). */
  runningJobs: number;
  peakRunningJobs: number;
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
  /** "dataset.table" -> last modification (ms) reported by INFORMATION_SCHEMA.PARTITIONS; DEFAULT_MODIFIED_MS otherwise. */
  modified?: Readonly<Record<string, number>>;
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
  /** Table data handed out so far (mutable counters). */
  served: Served;
  /** Gives a table a new last modification time (now), as rebuilding it in BigQuery would. */
  touchTable(dataset: string, table: string, atMs?: number): void;
  close(): Promise<void>;
}

/** What the REST and gRPC halves share. */
export interface StandInContext {
  warehouse: StandInWarehouse;
  faults: StandInFaults;
  requests: StandInRequest[];
  served: Served;
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
  legacySql: boolean;
  created: number;
  state: "RUNNING" | "DONE";
  errorResult: { reason: string; message: string } | undefined;
  table: string;
  columns: ResultColumn[];
  rows: number;
  /** The query reads warehouse tables (not only INFORMATION_SCHEMA): its rows are table data. */
  readsTables: boolean;
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

const HTTP_STATUS_NAMES: Readonly<Record<number, string>> = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  409: "ALREADY_EXISTS",
  429: "RESOURCE_EXHAUSTED",
  500: "INTERNAL",
  503: "UNAVAILABLE",
};
const REASON_STATUS: Readonly<Record<string, number>> = {
  invalidQuery: 400,
  invalid: 400,
  notFound: 404,
  accessDenied: 403,
  backendError: 503,
  internalError: 500,
  rateLimitExceeded: 429,
  resourcesExceeded: 400,
  stopped: 400,
};

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json; charset=UTF-8", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function errorBody(e: StandInError): unknown {
  return {
    error: {
      code: e.status,
      message: e.message,
      errors: [{ message: e.message, domain: "global", reason: e.reason }],
      status: HTTP_STATUS_NAMES[e.status] ?? "UNKNOWN",
    },
  };
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

/** Multi-regions whose jobs BigQuery finds without a location (see RestStandIn.findJob). */
const MULTI_REGIONS: ReadonlySet<string> = new Set(["US", "EU"]);

/** Location names compare without regard to case (`US` = `us`, `europe-west2` = `EUROPE-WEST2`). */
function sameLocation(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/**
 * The dialect BigQuery parses `query` in. The REST API's JobConfigurationQuery.useLegacySql and
 * QueryRequest.useLegacySql: "The default value is true" (the v2 discovery document, as generated
 * into @google-cloud/bigquery's types.d.ts). With the flag absent a leading `#standardSQL` or
 * `#legacySQL` line picks the dialect (BigQuery's query prefixes). @google-cloud/bigquery sends
 * `useLegacySql: false` from createQueryJob and query() unless told otherwise.
 */
function isLegacySql(query: string, useLegacySql: boolean | undefined): boolean {
  if (useLegacySql !== undefined) return useLegacySql;
  return DIALECT_PREFIX.exec(query)?.[1]?.toLowerCase() !== "standard";
}

const DIALECT_PREFIX = /^\s*#(standard|legacy)SQL\b[^\n]*\n?/i;

/**
 * Why BigQuery would refuse `query` as legacy SQL, as the job's error; undefined for GoogleSQL.
 * A backtick-quoted `project.dataset.table` is how the mistake shows on the real service: 400
 * `Invalid table name: \`p.d.t\` [Try using standard SQL (...)]` (googleapis/java-bigquery#1722;
 * reason `invalid` in googleapis/google-cloud-node#2398). Query parameters need GoogleSQL
 * ("Standard SQL is required to use query parameters", Google's parameterized-query samples); that
 * wording is the stand-in's own. The stand-in runs no legacy SQL at all: anything else sent as
 * legacy is refused too, so a caller that forgets `useLegacySql: false` fails here, not in production.
 */
function legacySqlProblem(query: string, params: readonly QueryParameter[], useLegacySql: boolean | undefined): StandInError | undefined {
  if (!isLegacySql(query, useLegacySql)) return undefined;
  const quoted = /`([^`]+)`/.exec(query);
  if (quoted)
    return new StandInError(
      400,
      "invalid",
      `Invalid table name: \`${quoted[1]}\` [Try using standard SQL (https://cloud.google.com/bigquery/docs/reference/standard-sql/enabling-standard-sql)]`,
    );
  if (params.length > 0)
    return new StandInError(400, "invalidQuery", "Query parameters cannot be used in legacy SQL queries; set useLegacySql to false (GoogleSQL)");
  return new StandInError(400, "invalidQuery", "The stand-in runs GoogleSQL only: this query was sent as legacy SQL (useLegacySql true or absent)");
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

  /**
   * Permission and existence checks BigQuery makes before it runs anything. A query runs in one
   * location; the warehouse's datasets all live in `this.wh.location`, so a job placed anywhere
   * else finds none of them, as BigQuery answers.
   */
  private checkAccess(datasets: string[], tables: Array<{ dataset: string; table: string }>, location = this.wh.location): void {
    const p = this.wh.project;
    const here = sameLocation(location, this.wh.location);
    for (const d of datasets) {
      if (this.ctx.faults.accessDeniedDatasets.has(d)) {
        throw new StandInError(
          403,
          "accessDenied",
          `Access Denied: Dataset ${p}:${d}: Permission bigquery.tables.getData denied on dataset ${p}:${d} (or it may not exist).`,
        );
      }
      if (!here || !this.wh.hasDataset(d)) throw new StandInError(404, "notFound", `Not found: Dataset ${p}:${d} was not found in location ${location}`);
    }
    for (const { dataset, table } of tables) {
      if (this.ctx.faults.missingTables.has(`${dataset}.${table}`) || !this.wh.hasTable(dataset, table)) {
        throw new StandInError(404, "notFound", `Not found: Table ${p}:${dataset}.${table} was not found in location ${location}`);
      }
    }
  }

  /** jobs.insert / jobs.query without bigquery.jobs.create; BigQuery's wording (403 on POST .../jobs). */
  private checkJobsCreate(): void {
    const p = this.wh.project;
    if (this.ctx.faults.jobsCreateDenied) {
      throw new StandInError(403, "accessDenied", `Access Denied: Project ${p}: User does not have bigquery.jobs.create permission in project ${p}.`);
    }
  }

  /** Creates a job; access problems throw (HTTP error), query problems fail the job. */
  private startJob(id: string, location: string, query: string, params: QueryParameter[], useLegacySql: boolean | undefined): Job {
    const existing = this.jobs.get(id);
    if (existing) throw new StandInError(409, "duplicate", `Already Exists: Job ${this.wh.project}:${existing.location}.${id}`);
    let finish = () => {};
    const done = new Promise<void>((resolve) => (finish = resolve));
    const job: Job = {
      id,
      location,
      query,
      legacySql: isLegacySql(query, useLegacySql),
      created: Date.now(),
      state: "RUNNING",
      errorResult: undefined,
      table: `anon_${id.replace(/[^A-Za-z0-9_]/g, "_")}`,
      columns: [],
      rows: 0,
      readsTables: false,
      done,
      finish,
    };
    const complete = (errorResult?: { reason: string; message: string }) => {
      if (job.state === "DONE") return;
      job.state = "DONE";
      job.errorResult = errorResult;
      job.finish();
    };
    this.jobs.set(id, job);
    let translated;
    try {
      const legacy = legacySqlProblem(query, params, useLegacySql);
      if (legacy) throw legacy;
      translated = this.wh.translate(query.replace(DIALECT_PREFIX, ""), params);
      this.checkAccess(translated.datasets, translated.tables, location);
      job.readsTables = translated.tables.length > 0;
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
    const served = this.ctx.served;
    served.runningJobs += 1;
    served.peakRunningJobs = Math.max(served.peakRunningJobs, served.runningJobs);
    const run = injected
      ? Promise.resolve()
      : this.wh.materialize(job.table, translated).then((r) => {
          job.columns = r.columns;
          job.rows = r.rows;
        });
    void Promise.all([run, wait])
      .finally(() => (served.runningJobs -= 1))
      .then(
        () => complete(injected ? { reason: injected.reason, message: injected.message ?? `Injected ${injected.reason}` } : undefined),
        (err: Error) => complete({ reason: "invalidQuery", message: err.message.split("\n")[0] ?? err.message }),
      );
    return job;
  }

  /**
   * jobs.insert with configuration.dryRun: the query is checked as if it ran (dialect, access,
   * tables, binding, types) and refused as the insert's own HTTP error; no job is stored and no
   * row is read. The answer is what BigQuery returns for a dry run: a DONE job without an id,
   * its statistics carrying the bytes the query would process, as strings.
   */
  private async dryRun(
    location: string,
    query: string,
    params: QueryParameter[],
    useLegacySql: boolean | undefined,
  ): Promise<{ resource: unknown; bytes: number }> {
    const legacy = legacySqlProblem(query, params, useLegacySql);
    if (legacy) throw legacy;
    const text = query.replace(DIALECT_PREFIX, "");
    const translated = this.wh.translate(text, params);
    this.checkAccess(translated.datasets, translated.tables, location);
    await this.wh.validate(translated);
    const bytes = await this.wh.bytesProcessed(translated, text);
    const p = this.wh.project;
    const now = String(Date.now());
    return {
      bytes,
      resource: {
        kind: "bigquery#job",
        jobReference: { projectId: p, location },
        configuration: { jobType: "QUERY", dryRun: true, query: { query, useLegacySql: isLegacySql(query, useLegacySql) } },
        status: { state: "DONE" },
        statistics: {
          creationTime: now,
          totalBytesProcessed: String(bytes),
          query: {
            totalBytesProcessed: String(bytes),
            totalBytesProcessedAccuracy: "PRECISE",
            cacheHit: false,
            statementType: "SELECT",
            referencedTables: translated.tables.map((t) => ({ projectId: p, datasetId: t.dataset, tableId: t.table })),
          },
        },
      },
    };
  }

  private resource(job: Job): unknown {
    const p = this.wh.project;
    return {
      kind: "bigquery#job",
      id: `${p}:${job.location}.${job.id}`,
      jobReference: { projectId: p, jobId: job.id, location: job.location },
      configuration: {
        jobType: "QUERY",
        query: { query: job.query, useLegacySql: job.legacySql, destinationTable: { projectId: p, datasetId: RESULTS_DATASET, tableId: job.table } },
      },
      status:
        job.state === "DONE"
          ? { state: "DONE", ...(job.errorResult ? { errorResult: job.errorResult, errors: [job.errorResult] } : {}) }
          : { state: "RUNNING" },
      statistics: { creationTime: String(job.created), startTime: String(job.created), query: { statementType: "SELECT", totalBytesProcessed: "0" } },
    };
  }

  /**
   * The job `id`, looked up the way BigQuery does: in the `location` the request names, or, when
   * it names none, in the US and EU multi-regions only. The REST reference, jobs.get /
   * jobs.getQueryResults / jobs.cancel, `location`: "You must specify the location to run the job
   * for the following scenarios: If the location to run a job is not in the us or the eu
   * multi-regional location; If the job's location is in a single region (for example,
   * us-central1)" (https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/get). A job
   * looked up in the wrong place is simply not there: HTTP 404, reason notFound,
   * `Not found: Job <project>:<jobId>`, as reported against the real service in
   * googleapis/nodejs-bigquery#1016 and #896, samelamin/spark-bigquery#85 (the whole error body),
   * talkiq/gcloud-aio#584; with a location the job's full id reads `<project>:<location>.<jobId>`.
   */
  private findJob(id: string, location: string | null): Job {
    const job = this.jobs.get(id);
    const found = job !== undefined && (location ? sameLocation(location, job.location) : MULTI_REGIONS.has(job.location.toUpperCase()));
    if (!job || !found) throw new StandInError(404, "notFound", `Not found: Job ${this.wh.project}:${location ? `${location}.` : ""}${id}`);
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
    const rows = page.map((r) => ({ f: r.map((v) => ({ v: restValue(v, opts.int64Timestamps) })) }));
    if (job.readsTables) {
      this.ctx.served.tableRows += rows.length;
      this.ctx.served.tableBytes += rows.length > 0 ? Buffer.byteLength(JSON.stringify(rows)) : 0;
    } else this.ctx.served.metadataRows += rows.length;
    return {
      kind,
      jobReference,
      jobComplete: true,
      schema,
      totalRows: String(job.rows),
      ...(rows.length > 0 ? { rows } : {}),
      ...(page.length > 0 && next < job.rows ? { pageToken: String(next) } : {}),
      totalBytesProcessed: "0",
      cacheHit: false,
    };
  }

  async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://standin");
    const entry: StandInRequest = { api: "bigquery", method: "unknown", status: 0, at: Date.now() };
    let lostAnswer: StandInError | undefined;
    const send = (status: number, body: unknown): void => {
      if (lostAnswer) throw lostAnswer;
      sendJson(res, status, body);
    };
    this.ctx.requests.push(entry);
    try {
      const m = /^\/bigquery\/v2\/projects\/([^/]+)\/(.+)$/.exec(url.pathname);
      if (!m) throw new StandInError(404, "notFound", `No such endpoint: ${url.pathname}`);
      const [, project, rest = ""] = m;
      const route = `${req.method} ${rest}`;
      const seg = rest.split("/").map(decodeURIComponent);
      entry.method = /^GET datasets\/[^/]+$/.test(route)
        ? "datasets.get"
        : route === "POST jobs"
          ? "jobs.insert"
          : /^GET jobs\/[^/]+$/.test(route)
            ? "jobs.get"
            : /^POST jobs\/[^/]+\/cancel$/.test(route)
              ? "jobs.cancel"
              : route === "POST queries"
                ? "jobs.query"
                : /^GET queries\/[^/]+$/.test(route)
                  ? "jobs.getQueryResults"
                  : "unknown";
      if (!String(req.headers.authorization ?? "").startsWith("Bearer "))
        throw new StandInError(401, "unauthorized", "Request is missing required authentication credential.");
      const injected = takeFault(this.ctx.faults.restErrors, (f) => f.method === "*" || f.method === entry.method);
      if (injected && !injected.afterServing) throw new StandInError(injected.status, injected.reason, injected.message ?? `Injected ${injected.reason}`);
      if (injected) lostAnswer = new StandInError(injected.status, injected.reason, injected.message ?? `Injected ${injected.reason}`);
      if (this.ctx.faults.restErrorRate > 0 && this.ctx.random() < this.ctx.faults.restErrorRate) {
        throw this.ctx.random() < 0.5
          ? new StandInError(429, "rateLimitExceeded", "Exceeded rate limits: too many api requests per user per method")
          : new StandInError(503, "backendError", "Backend error.");
      }
      if (project !== this.wh.project) throw new StandInError(404, "notFound", `Not found: Project ${project}`);
      const body = req.method === "POST" ? await readBody(req) : {};
      const int64Timestamps = url.searchParams.get("formatOptions.useInt64Timestamp") === "true";
      const location = url.searchParams.get("location") || null;
      switch (entry.method) {
        case "datasets.get": {
          const d = seg[1] ?? "";
          entry.dataset = d;
          this.checkAccess([d], []);
          return send(200, {
            kind: "bigquery#dataset",
            id: `${project}:${d}`,
            datasetReference: { projectId: project, datasetId: d },
            location: this.wh.location,
          });
        }
        case "jobs.insert": {
          this.checkJobsCreate();
          const ref = (body.jobReference ?? {}) as { jobId?: string; location?: string };
          const configuration = (body.configuration ?? {}) as {
            dryRun?: boolean;
            query?: { query?: string; queryParameters?: QueryParameter[]; useLegacySql?: boolean };
          };
          const query = configuration.query;
          if (!query?.query) throw new StandInError(400, "invalid", "Only query jobs are supported by the stand-in");
          if (configuration.dryRun === true) {
            Object.assign(entry, { query: query.query, dryRun: true }, typeof query.useLegacySql === "boolean" ? { useLegacySql: query.useLegacySql } : {});
            const { resource, bytes } = await this.dryRun(ref.location || this.wh.location, query.query, query.queryParameters ?? [], query.useLegacySql);
            entry.bytesProcessed = bytes;
            return send(200, resource);
          }
          const id = ref.jobId ?? `job_${Math.floor(this.ctx.random() * 2 ** 48).toString(36)}`;
          Object.assign(entry, { jobId: id, query: query.query }, typeof query.useLegacySql === "boolean" ? { useLegacySql: query.useLegacySql } : {});
          // Without a location BigQuery runs the job where the datasets it reads are.
          const job = this.startJob(id, ref.location || this.wh.location, query.query, query.queryParameters ?? [], query.useLegacySql);
          return send(200, this.resource(job));
        }
        case "jobs.get":
          entry.jobId = seg[1];
          return send(200, this.resource(this.findJob(seg[1] ?? "", location)));
        case "jobs.cancel": {
          const job = this.findJob(seg[1] ?? "", location);
          entry.jobId = job.id;
          if (job.state !== "DONE") {
            job.state = "DONE";
            job.errorResult = { reason: "stopped", message: "Job execution was cancelled: User requested cancellation" };
            job.finish();
          }
          return send(200, { kind: "bigquery#jobCancelResponse", job: this.resource(job) });
        }
        case "jobs.query": {
          this.checkJobsCreate();
          // BigQuery's QueryRequest: the query text and the job's location are strings.
          const request = body as { query?: string; location?: string };
          const text = request.query ?? "";
          const id = `query_${Math.floor(this.ctx.random() * 2 ** 48).toString(36)}`;
          const useLegacySql = typeof body.useLegacySql === "boolean" ? body.useLegacySql : undefined;
          Object.assign(entry, { jobId: id, query: text }, useLegacySql === undefined ? {} : { useLegacySql });
          const job = this.startJob(id, request.location || this.wh.location, text, (body.queryParameters as QueryParameter[] | undefined) ?? [], useLegacySql);
          await this.waitFor(job, Number(body.timeoutMs ?? 10_000));
          const int64 = ((body.formatOptions ?? {}) as { useInt64Timestamp?: boolean }).useInt64Timestamp === true;
          const maxResults = body.maxResults === undefined ? undefined : Number(body.maxResults);
          return send(200, await this.results(job, "bigquery#queryResponse", { start: 0, maxResults, int64Timestamps: int64 }));
        }
        case "jobs.getQueryResults": {
          const job = this.findJob(seg[1] ?? "", location);
          entry.jobId = job.id;
          await this.waitFor(job, Number(url.searchParams.get("timeoutMs") ?? 10_000));
          const token = url.searchParams.get("pageToken") ?? url.searchParams.get("startIndex");
          const maxResults = url.searchParams.get("maxResults");
          return send(
            200,
            await this.results(job, "bigquery#getQueryResultsResponse", {
              start: token ? Number(token) : 0,
              maxResults: maxResults === null ? undefined : Number(maxResults),
              int64Timestamps,
            }),
          );
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
/**
 * The job's variables that point BACKEND=gcp at these stand-ins (and at a Cloud Storage stand-in
 * at `gcsEndpoint`); `location: false` leaves BQ_LOCATION unset, for BigQuery to infer.
 */
export function gcpStandInEnv(
  s: Pick<StandIns, "project" | "location" | "bigqueryEndpoint" | "storageEndpoint">,
  gcsEndpoint: string,
  opts: { location?: boolean } = {},
): Record<string, string> {
  return {
    BACKEND: "gcp",
    GCP_PROJECT: s.project,
    ...(opts.location === false ? {} : { BQ_LOCATION: s.location }),
    BIGQUERY_ENDPOINT: s.bigqueryEndpoint,
    BIGQUERY_STORAGE_ENDPOINT: s.storageEndpoint,
    GCS_ENDPOINT: gcsEndpoint,
  };
}

export async function startBigQueryStandIns(opts: StandInOptions): Promise<StandIns> {
  const project = opts.project ?? "bqx-standin";
  const location = opts.location ?? "US";
  const warehouse = await StandInWarehouse.open(opts.warehouse, project, location);
  for (const [name, ms] of Object.entries(opts.modified ?? {})) warehouse.modified.set(name, ms);
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
    jobsCreateDenied: false,
    ...opts.faults,
  };
  const retentionMs = opts.resultRetentionMs ?? 30_000;
  const requests: StandInRequest[] = [];
  const served: Served = { tableRows: 0, tableBytes: 0, metadataRows: 0, runningJobs: 0, peakRunningJobs: 0 };
  const ctx: StandInContext = {
    warehouse,
    faults,
    requests,
    served,
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
    served,
    touchTable: (dataset, table, atMs) => warehouse.touch(dataset, table, atMs),
    async close() {
      await storage.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      warehouse.close();
    },
  };
}

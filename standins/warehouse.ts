// The data side of the BigQuery stand-ins: a DuckDB warehouse file (schemas = datasets) attached
// read-only to an in-memory DuckDB that also holds each query job's result table, as BigQuery
// keeps anonymous result tables. Translates the GoogleSQL the BigQuery adapter sends into DuckDB:
//   `project.dataset.table` (or `project`.`dataset`.`table`)  -> wh."dataset"."table"
//   `project.dataset`.INFORMATION_SCHEMA.TABLES / .COLUMNS    -> DuckDB's information_schema with
//                                                                BigQuery's columns and type names
//   `project.dataset`.INFORMATION_SCHEMA.PARTITIONS            -> one row per table, partition_id NULL
//                                                                (as for a non-partitioned table), its
//                                                                last_modified_time from `modified`
//   x IN UNNEST(@array)                                        -> x IN (SELECT unnest(<the list>))
//   `column`                                                    -> "column"
//   @name (a named query parameter)                            -> CAST($name AS <its type>)
// DATE(x), BETWEEN, IS NOT NULL, ORDER BY and LIMIT mean the same in both dialects.
// No vitest imports: `npm run standins` loads this from a plain Node process.
import { DuckDBInstance, DuckDBTimestampTZValue, DuckDBTimestampValue, DuckDBDateValue, type DuckDBConnection, type DuckDBValue } from "@duckdb/node-api";
import { varchar } from "./duckdb-text.ts";

export const RESULTS_DATASET = "_job_results";
/** What INFORMATION_SCHEMA.PARTITIONS reports for a table nobody touched: 2025-01-01T00:00:00Z. */
export const DEFAULT_MODIFIED_MS = Date.parse("2025-01-01T00:00:00Z");
const WAREHOUSE_CATALOG = "wh";

/** A BigQuery-style failure: HTTP status, reason and message, as REST and gRPC both report. */
export class StandInError extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, reason: string, message: string) {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

export interface QueryParameter {
  name?: string | null;
  parameterType?: { type?: string | null; arrayType?: { type?: string | null } | null } | null;
  parameterValue?: { value?: string | null; arrayValues?: Array<{ value?: string | null }> | null } | null;
}

export interface TranslatedQuery {
  sql: string;
  values: Record<string, string>;
  /** Every dataset the query reads (INFORMATION_SCHEMA included). */
  datasets: string[];
  tables: Array<{ dataset: string; table: string }>;
  /** `column op @param` comparisons on a bare column, checked against the column's type when the query runs. */
  comparisons: Array<{ column: string; op: string; paramType: string }>;
}

export interface ResultColumn {
  name: string;
  /** DuckDB's type name, e.g. DOUBLE, TIMESTAMP WITH TIME ZONE. */
  duckType: string;
}

/** A GoogleSQL quoted identifier (backslash escapes allowed inside), and a dotted path of them. */
const QUOTED = /`((?:[^`\\]|\\.)*)`/g;
const QUOTED_PATH = "`(?:[^`\\\\]|\\\\.)*`(?:\\.`(?:[^`\\\\]|\\\\.)*`)*";

const q = (name: string) => `"${name.replaceAll('"', '""')}"`;
const lit = (value: string) => `'${value.replaceAll("'", "''")}'`;

/** DuckDB type -> BigQuery's names: [INFORMATION_SCHEMA / GoogleSQL name, REST schema (legacy) name]. */
export function bigQueryType(duckType: string): [string, string] {
  const t = duckType.toUpperCase();
  if (t === "TIMESTAMP WITH TIME ZONE") return ["TIMESTAMP", "TIMESTAMP"];
  if (t === "TIMESTAMP") return ["DATETIME", "DATETIME"];
  if (t === "DOUBLE" || t === "FLOAT" || t === "REAL") return ["FLOAT64", "FLOAT"];
  if (["BIGINT", "INTEGER", "SMALLINT", "TINYINT", "UINTEGER", "USMALLINT", "UTINYINT"].includes(t)) return ["INT64", "INTEGER"];
  if (t === "VARCHAR") return ["STRING", "STRING"];
  if (t === "BOOLEAN") return ["BOOL", "BOOLEAN"];
  if (t === "DATE") return ["DATE", "DATE"];
  return [t, t];
}

/** Bytes a value of a column counts for in the stand-ins' scan figures (BigQuery: 8 for numbers and timestamps, 1 for BOOL, strings by length: 16 here). */
export function valueBytes(duckType: string): number {
  const t = duckType.toUpperCase();
  if (t === "BOOLEAN") return 1;
  if (t === "VARCHAR") return 16;
  return 8;
}

const INFO_TYPE_CASE = `CASE upper(data_type)
  WHEN 'TIMESTAMP WITH TIME ZONE' THEN 'TIMESTAMP' WHEN 'TIMESTAMP' THEN 'DATETIME'
  WHEN 'DOUBLE' THEN 'FLOAT64' WHEN 'FLOAT' THEN 'FLOAT64' WHEN 'REAL' THEN 'FLOAT64'
  WHEN 'BIGINT' THEN 'INT64' WHEN 'INTEGER' THEN 'INT64' WHEN 'SMALLINT' THEN 'INT64' WHEN 'TINYINT' THEN 'INT64'
  WHEN 'VARCHAR' THEN 'STRING' WHEN 'BOOLEAN' THEN 'BOOL' WHEN 'DATE' THEN 'DATE' ELSE data_type END`;

const PARAM_CASTS: Readonly<Record<string, string>> = {
  DATE: "DATE",
  INT64: "BIGINT",
  FLOAT64: "DOUBLE",
  STRING: "VARCHAR",
  TIMESTAMP: "TIMESTAMPTZ",
  BOOL: "BOOLEAN",
};

export class StandInWarehouse {
  readonly project: string;
  readonly location: string;
  private readonly instance: DuckDBInstance;
  /** dataset -> tables of the warehouse file; read-only, so loaded once. */
  private readonly catalog: Map<string, Set<string>>;
  private readonly results = new Set<string>();
  /** "dataset.table" -> its last modification (ms since the epoch); DEFAULT_MODIFIED_MS when absent. */
  readonly modified = new Map<string, number>();

  private constructor(instance: DuckDBInstance, catalog: Map<string, Set<string>>, project: string, location: string) {
    this.instance = instance;
    this.catalog = catalog;
    this.project = project;
    this.location = location;
  }

  static async open(warehouse: string, project: string, location: string): Promise<StandInWarehouse> {
    const instance = await DuckDBInstance.create(":memory:", { threads: "2" });
    const c = await instance.connect();
    try {
      // Read-only: other processes (tests, the pipeline) may have the same file open.
      await c.run(`ATTACH ${lit(warehouse)} AS ${WAREHOUSE_CATALOG} (READ_ONLY)`);
      await c.run("SET GLOBAL TimeZone = 'UTC'");
      await c.run(`CREATE SCHEMA memory.${q(RESULTS_DATASET)}`);
      const reader = await c.runAndReadAll(`SELECT table_schema, table_name FROM information_schema.tables WHERE table_catalog = ${lit(WAREHOUSE_CATALOG)}`);
      const catalog = new Map<string, Set<string>>();
      for (const [schemaCell, tableCell] of reader.getRowsJS()) {
        const schema = varchar(schemaCell);
        const set = catalog.get(schema) ?? new Set<string>();
        set.add(varchar(tableCell));
        catalog.set(schema, set);
      }
      return new StandInWarehouse(instance, catalog, project, location);
    } finally {
      c.closeSync();
    }
  }

  /** A fresh connection per operation: hundreds of jobs and streams run at once, each briefly. */
  async withConnection<T>(fn: (c: DuckDBConnection) => Promise<T>): Promise<T> {
    const c = await this.instance.connect();
    try {
      return await fn(c);
    } finally {
      c.closeSync();
    }
  }

  hasDataset(dataset: string): boolean {
    return dataset === RESULTS_DATASET || this.catalog.has(dataset);
  }

  hasTable(dataset: string, table: string): boolean {
    return dataset === RESULTS_DATASET ? this.results.has(table) : (this.catalog.get(dataset)?.has(table) ?? false);
  }

  /** The DuckDB name of a dataset's table (a warehouse table or a job's result table). */
  duckName(dataset: string, table: string): string {
    return dataset === RESULTS_DATASET ? `memory.${q(RESULTS_DATASET)}.${q(table)}` : `${WAREHOUSE_CATALOG}.${q(dataset)}.${q(table)}`;
  }

  /** A new version of a table, as rewriting it in BigQuery gives (its rows stay the warehouse file's). */
  touch(dataset: string, table: string, atMs = Date.now()): void {
    this.modified.set(`${dataset}.${table}`, atMs);
  }

  private modifiedCase(dataset: string): string {
    const bumped = [...this.modified].filter(([name]) => name.startsWith(`${dataset}.`));
    const micros = (ms: number) => `${BigInt(Math.round(ms)) * 1000n}::BIGINT`;
    const cases = bumped.map(([name, ms]) => ` WHEN ${lit(name.slice(dataset.length + 1))} THEN ${micros(ms)}`).join("");
    return `make_timestamptz(${cases ? `CASE table_name${cases} ELSE ${micros(DEFAULT_MODIFIED_MS)} END` : micros(DEFAULT_MODIFIED_MS)})`;
  }

  private notFoundProject(project: string): StandInError {
    return new StandInError(404, "notFound", `Not found: Project ${project}`);
  }

  translate(sql: string, params: readonly QueryParameter[] = []): TranslatedQuery {
    const datasets = new Set<string>();
    const tables: Array<{ dataset: string; table: string }> = [];
    // A quoted identifier may hold backslash escapes (\` and \\); dots inside one split a path.
    const splitPath = (quoted: string) => [...quoted.matchAll(QUOTED)].flatMap((m) => (m[1] ?? "").split(".").map((s) => s.replace(/\\(.)/g, "$1")));
    const paramTypes = new Map(params.map((p) => [p.name ?? "", (p.parameterType?.type ?? "STRING").toUpperCase()]));
    const comparisons = [...sql.matchAll(/(?<!\()`([^`.]+)`\s*(<=|>=|<|>|=)\s*@([A-Za-z_]\w*)/g)].map((m) => ({
      column: m[1]!,
      op: m[2]!,
      paramType: paramTypes.get(m[3]!) ?? "STRING",
    }));

    let out = sql.replace(new RegExp(`(${QUOTED_PATH})\\.INFORMATION_SCHEMA\\.(TABLES|COLUMNS|PARTITIONS)\\b`, "gi"), (_m, path: string, view: string) => {
      const parts = splitPath(path);
      const [project, dataset] = parts.length === 2 ? parts : [this.project, parts[0] ?? ""];
      if (project !== this.project) throw this.notFoundProject(project ?? "");
      datasets.add(dataset ?? "");
      const where = `table_catalog = ${lit(WAREHOUSE_CATALOG)} AND table_schema = ${lit(dataset ?? "")}`;
      if (view.toUpperCase() === "PARTITIONS") {
        // total_logical_bytes: the rows times the columns' widths (what the Storage Read stand-in estimates for all columns).
        const rows = `(SELECT d.estimated_size FROM duckdb_tables() d WHERE d.database_name = ${lit(WAREHOUSE_CATALOG)} AND d.schema_name = t.table_schema AND d.table_name = t.table_name)`;
        const width = `(SELECT sum(CASE c.data_type WHEN 'BOOLEAN' THEN 1 WHEN 'VARCHAR' THEN 16 ELSE 8 END) FROM information_schema.columns c WHERE c.table_catalog = ${lit(WAREHOUSE_CATALOG)} AND c.table_schema = t.table_schema AND c.table_name = t.table_name)`;
        return `(SELECT ${lit(this.project)} AS table_catalog, table_schema, table_name, NULL::VARCHAR AS partition_id, ${this.modifiedCase(dataset ?? "")} AS last_modified_time, ${rows}::BIGINT AS total_rows, (${rows} * ${width})::BIGINT AS total_logical_bytes FROM information_schema.tables t WHERE ${where} AND table_type = 'BASE TABLE')`;
      }
      if (view.toUpperCase() === "TABLES") {
        return `(SELECT ${lit(this.project)} AS table_catalog, table_schema, table_name, table_type FROM information_schema.tables WHERE ${where})`;
      }
      return `(SELECT ${lit(this.project)} AS table_catalog, table_schema, table_name, column_name, ordinal_position, is_nullable, 'NO' AS is_hidden, ${INFO_TYPE_CASE} AS data_type FROM information_schema.columns WHERE ${where})`;
    });

    out = out.replace(new RegExp(QUOTED_PATH, "g"), (quoted) => {
      const parts = splitPath(quoted);
      if (parts.length === 1) return q(parts[0] ?? "");
      const [project, dataset, table] = parts.length === 3 ? parts : [this.project, parts[0], parts[1]];
      if (project !== this.project) throw this.notFoundProject(project ?? "");
      datasets.add(dataset ?? "");
      tables.push({ dataset: dataset ?? "", table: table ?? "" });
      return this.duckName(dataset ?? "", table ?? "");
    });

    out = out.replace(/\bIN\s+UNNEST\(\s*(@[A-Za-z_]\w*)\s*\)/gi, (_m, param: string) => `IN (SELECT unnest(${param}))`);
    const byName = new Map(params.map((p) => [p.name ?? "", p]));
    const values: Record<string, string> = {};
    out = out.replace(/@([A-Za-z_]\w*)/g, (_m, name: string) => {
      const p = byName.get(name);
      if (!p) throw new StandInError(400, "invalidQuery", `Undeclared query parameters: ${name}`);
      if ((p.parameterType?.type ?? "").toUpperCase() === "ARRAY") {
        if ((p.parameterType?.arrayType?.type ?? "STRING").toUpperCase() !== "STRING")
          throw new StandInError(400, "invalidQuery", `Query parameter '${name}': the stand-in takes ARRAY<STRING> only`);
        values[name] = JSON.stringify((p.parameterValue?.arrayValues ?? []).map((v) => v.value ?? null));
        return `CAST(json($${name}) AS VARCHAR[])`;
      }
      const value = p.parameterValue?.value;
      // The client drops a plain string passed with `types: {x: "DATE"}` (it wants BigQuery.date()).
      if (value === undefined || value === null) throw new StandInError(400, "invalidQuery", `Query parameter '${name}' has no value`);
      const type = (p.parameterType?.type ?? "STRING").toUpperCase();
      const cast = PARAM_CASTS[type];
      if (!cast) throw new StandInError(400, "invalidQuery", `Query parameter '${name}' has unsupported type ${type}`);
      values[name] = value;
      return `CAST($${name} AS ${cast})`;
    });
    // GoogleSQL's TIMESTAMP(datetime_expression) reads a DATETIME as UTC; the session time zone is UTC.
    out = out.replace(/\bTIMESTAMP\(("(?:[^"]|"")+")\)/gi, "CAST($1 AS TIMESTAMPTZ)");
    return { sql: out, values, datasets: [...datasets], tables, comparisons };
  }

  /**
   * What BigQuery refuses in a query before running it, beyond what `translate` finds: a TIMESTAMP
   * compared with a DATETIME (BigQuery has no implicit conversion: "No matching signature", where
   * DuckDB would convert silently), and anything DuckDB cannot bind (unknown columns, functions,
   * types). Binds the query without running it.
   */
  async validate(query: TranslatedQuery): Promise<void> {
    await this.withConnection(async (c) => {
      await this.checkComparisons(c, query);
      try {
        (await c.prepare(query.sql)).destroySync();
      } catch (err) {
        throw new StandInError(400, "invalidQuery", (err as Error).message.split("\n")[0] ?? "invalid query");
      }
    });
  }

  /**
   * The bytes BigQuery would process for `query`, as an unpartitioned table is billed: for each
   * table it reads, every row of the columns the query names (a backtick-quoted name, or all of
   * them for SELECT * straight from the table) x the columns' value widths; WHERE and LIMIT
   * change nothing. The same figure the Storage Read stand-in reports for a session selecting
   * those columns.
   */
  async bytesProcessed(query: TranslatedQuery, text: string): Promise<number> {
    const named = new Set([...text.matchAll(QUOTED)].map((m) => (m[1] ?? "").replace(/\\(.)/g, "$1").toLowerCase()));
    const everything = /SELECT\s+\*\s+FROM\s+`/i.test(text);
    let bytes = 0;
    for (const source of query.tables) {
      const duckName = this.duckName(source.dataset, source.table);
      const columns = await this.withConnection((c) => this.columnsOf(c, duckName));
      const read = everything ? columns : columns.filter((col) => named.has(col.name.toLowerCase()));
      bytes += (await this.rowCount(duckName)) * read.reduce((n, col) => n + valueBytes(col.duckType), 0);
    }
    return bytes;
  }

  private async checkComparisons(c: DuckDBConnection, query: TranslatedQuery): Promise<void> {
    for (const source of query.tables) {
      const columns = await this.columnsOf(c, this.duckName(source.dataset, source.table));
      for (const cmp of query.comparisons) {
        const column = columns.find((col) => col.name === cmp.column);
        if (!column) continue;
        const [type] = bigQueryType(column.duckType);
        if ((type === "DATETIME" && cmp.paramType === "TIMESTAMP") || (type === "TIMESTAMP" && cmp.paramType === "DATETIME")) {
          throw new StandInError(
            400,
            "invalidQuery",
            `No matching signature for operator ${cmp.op} for argument types: ${type}, ${cmp.paramType}. Supported signature: ANY ${cmp.op} ANY`,
          );
        }
      }
    }
  }

  /** Runs a translated query into a new result table; returns its columns and row count. */
  async materialize(table: string, query: TranslatedQuery): Promise<{ columns: ResultColumn[]; rows: number }> {
    return this.withConnection(async (c) => {
      await this.checkComparisons(c, query);
      const name = this.duckName(RESULTS_DATASET, table);
      await c.run(`CREATE TABLE ${name} AS ${query.sql}`, query.values);
      this.results.add(table);
      const count = await c.runAndReadAll(`SELECT count(*) FROM ${name}`);
      return { columns: await this.columnsOf(c, name), rows: Number(count.getRowsJS()[0]?.[0] ?? 0) };
    });
  }

  async columnsOf(c: DuckDBConnection, duckName: string): Promise<ResultColumn[]> {
    const probe = await c.run(`SELECT * FROM ${duckName} LIMIT 0`);
    return probe.columnNames().map((name, i) => ({ name, duckType: probe.columnType(i).toString() }));
  }

  async rowCount(duckName: string, where?: string): Promise<number> {
    return this.withConnection(async (c) => {
      const r = await c.runAndReadAll(`SELECT count(*) FROM ${duckName}${where ? ` WHERE ${where}` : ""}`);
      return Number(r.getRowsJS()[0]?.[0] ?? 0);
    });
  }

  /** A page of a result table, values in DuckDB's own classes. */
  async page(table: string, start: number, count: number): Promise<DuckDBValue[][]> {
    return this.withConnection(async (c) => {
      const r = await c.runAndReadAll(`SELECT * FROM ${this.duckName(RESULTS_DATASET, table)} LIMIT ${count} OFFSET ${start}`);
      return r.getRows();
    });
  }

  async dropResult(table: string): Promise<void> {
    if (!this.results.delete(table)) return;
    await this.withConnection((c) => c.run(`DROP TABLE IF EXISTS ${this.duckName(RESULTS_DATASET, table)}`));
  }

  close(): void {
    this.instance.closeSync();
  }
}

/** One cell in BigQuery's REST JSON encoding (every scalar is a string). */
export function restValue(v: DuckDBValue, int64Timestamps: boolean): string | null {
  if (v === null || v === undefined) return null;
  if (v instanceof DuckDBTimestampTZValue) return int64Timestamps ? v.micros.toString() : String(Number(v.micros) / 1e6);
  if (v instanceof DuckDBTimestampValue) return v.toString().replace(" ", "T");
  if (v instanceof DuckDBDateValue) return v.toString();
  if (typeof v === "bigint" || typeof v === "number" || typeof v === "boolean" || typeof v === "string") return String(v);
  return String(v);
}

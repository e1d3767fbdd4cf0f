// What a BigQuery read asks for, as text: the extraction query (query route), the read session's
// row restriction (table route) and which route a read takes. No client is loaded here, so the
// main thread (PLAN_ONLY's dry runs and read-session check) shares these with the workers without
// loading polars, Arrow or (for a local plan) the Google clients.
import { KEY_COLUMN } from "../constants.ts";
import type { SliceBounds, TableQuery, GcpTaskSettings } from "./port.ts";
import { quoteBigQueryIdent } from "./bigquery-query.ts";

/**
 * A microsecond key as a GoogleSQL literal exact to the microsecond: a TIMESTAMP in UTC, or for a
 * DATETIME key (no time zone, read as UTC) the DATETIME of the same UTC wall-clock time: BigQuery
 * compares neither type with the other.
 */
export function keyLiteral(micros: bigint, zoneless = false): string {
  const seconds = micros / 1_000_000n - (micros % 1_000_000n < 0n ? 1n : 0n);
  const fraction = String(micros - seconds * 1_000_000n).padStart(6, "0");
  const text = new Date(Number(seconds) * 1000).toISOString().slice(0, 19).replace("T", " ");
  return zoneless ? `DATETIME '${text}.${fraction}'` : `TIMESTAMP '${text}.${fraction}+00'`;
}

/** The day after an ISO date (YYYY-MM-DD), as an ISO date. */
function nextDay(date: string): string {
  return new Date(Date.parse(`${date}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10);
}

/**
 * The read session's row restriction: the Storage Read API takes comparisons of a column with a
 * constant joined by AND (no functions of columns), so `DATE(interval_time) BETWEEN from AND to`
 * (UTC) becomes a half-open TIMESTAMP range (DATETIME for a zone-less key); then the target's
 * not-null rule and a slice's key range.
 */
export function tableRowRestriction(
  query: Pick<TableQuery, "dateFrom" | "dateTo" | "notNullColumn" | "zonelessKey">,
  slice?: Pick<SliceBounds, "afterKey" | "throughKey">,
): string {
  const q = quoteBigQueryIdent;
  const zoneless = query.zonelessKey === true;
  const midnight = (date: string) => (zoneless ? `DATETIME '${date} 00:00:00'` : `TIMESTAMP '${date} 00:00:00+00'`);
  return [
    `${q(KEY_COLUMN)} >= ${midnight(query.dateFrom)}`,
    `${q(KEY_COLUMN)} < ${midnight(nextDay(query.dateTo))}`,
    ...(query.notNullColumn ? [`${q(query.notNullColumn)} IS NOT NULL`] : []),
    ...(slice?.afterKey !== undefined ? [`${q(KEY_COLUMN)} > ${keyLiteral(slice.afterKey, zoneless)}`] : []),
    ...(slice?.throughKey !== undefined ? [`${q(KEY_COLUMN)} <= ${keyLiteral(slice.throughKey, zoneless)}`] : []),
  ].join(" AND ");
}

/** Which route a read takes: the first N rows by time need a query; everything else reads the table. */
export function readRouteFor(gcp: Pick<GcpTaskSettings, "readRoute">, query: Pick<TableQuery, "rowLimit">): "table" | "query" {
  return query.rowLimit !== undefined || gcp.readRoute === "query" ? "query" : "table";
}

/**
 * The production query shape in GoogleSQL: `DATE(interval_time) BETWEEN @date_from AND @date_to`
 * with DATE query parameters (never spliced dates), identifiers in backticks, columns renamed in
 * the SELECT so the result already has the output's names. For a slice, the key range as TIMESTAMP
 * parameters; with ROW_LIMIT, the table's first N rows by time first. A DATETIME key (no time
 * zone) is read as the UTC TIMESTAMP `TIMESTAMP(key)`.
 */
export function bigQueryExtractionSql(
  query: Pick<TableQuery, "dataset" | "table" | "columns" | "rowLimit" | "notNullColumn" | "zonelessKey">,
  project: string,
  slice?: Pick<SliceBounds, "afterKey" | "throughKey">,
): string {
  const q = quoteBigQueryIdent;
  const asUtc = query.zonelessKey ? `TIMESTAMP(${q(KEY_COLUMN)})` : q(KEY_COLUMN);
  const select = [
    query.zonelessKey ? `${asUtc} AS ${q(KEY_COLUMN)}` : q(KEY_COLUMN),
    ...query.columns.map((c) => (c.source === c.target ? q(c.source) : `${q(c.source)} AS ${q(c.target)}`)),
  ];
  const where = [`DATE(${q(KEY_COLUMN)}) BETWEEN @date_from AND @date_to`, ...(query.notNullColumn ? [`${q(query.notNullColumn)} IS NOT NULL`] : [])];
  // On the table the key is compared as UTC; outside the ROW_LIMIT subquery it already is.
  const boundsOn = (key: string) => [
    ...(slice?.afterKey !== undefined ? [`${key} > @after_key`] : []),
    ...(slice?.throughKey !== undefined ? [`${key} <= @through_key`] : []),
  ];
  const bounds = boundsOn(asUtc);
  const from = q(`${project}.${query.dataset}.${query.table}`);
  if (query.rowLimit === undefined) return `SELECT ${select.join(", ")} FROM ${from} WHERE ${[...where, ...bounds].join(" AND ")} ORDER BY ${q(KEY_COLUMN)}`;
  const limited = `SELECT ${select.join(", ")} FROM ${from} WHERE ${where.join(" AND ")} ORDER BY ${q(KEY_COLUMN)} LIMIT ${query.rowLimit}`;
  return bounds.length === 0 ? limited : `SELECT * FROM (${limited}) WHERE ${boundsOn(q(KEY_COLUMN)).join(" AND ")} ORDER BY ${q(KEY_COLUMN)}`;
}

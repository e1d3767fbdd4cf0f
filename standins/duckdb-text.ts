// DuckDB gives query results as JS values of any kind; a VARCHAR cell (a table or column name from
// information_schema or parquet_schema) is a string, and this says so with a check, not a cast.
// No vitest imports: `npm run standins` loads this from a plain Node process.
import type { JS } from "@duckdb/node-api";

/** A VARCHAR cell's text; anything else (a NULL, a number) means the query is not what the caller thinks. */
export function varchar(v: JS | undefined): string {
  if (typeof v !== "string") throw new TypeError(`expected a VARCHAR value, got ${v === null ? "null" : typeof v}`);
  return v;
}

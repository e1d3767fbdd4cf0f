// Which warehouse names the job can carry, decided at discovery before anything is read. A table's
// or column's name never becomes a file or object name (parts are named by fingerprint, files by
// pair), so slashes, `..`, quotes, spaces and non-ASCII letters travel as they are: quoted in SQL
// (src/sql.ts, quoteBigQueryIdent), JSON-escaped in log lines and the manifest, URI-encoded in
// object metadata, UTF-8 in the parquet schema. What cannot be carried the same way by both
// warehouses and every reader of the file is refused here, each offending name listed with the fix.
// Pure functions; no I/O.

/** BigQuery's limit on a column name, so also on the aliases its extraction query gives them. */
export const MAX_COLUMN_NAME_CHARS = 300;

// C0 and C1 controls (NUL, newline, escape, ...): they would split or forge log lines and headers.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/** A name as messages show it: in quotes, with any quote or control character escaped. */
export function shownName(name: string): string {
  return JSON.stringify(name);
}

/** Why a table or column name cannot be carried, or undefined when it can. */
export function nameProblem(name: string): string | undefined {
  if (name === "") return "is empty";
  if (LONE_SURROGATE.test(name)) return "is not valid Unicode (a lone surrogate)";
  if (CONTROL.test(name)) return "contains a control character (a newline, tab, NUL, ...)";
  // BigQuery reads `a.b` as a path (dataset.table, struct.field), and so do Spark and pyarrow's
  // column paths in the training file: a dot in a name cannot mean the same thing everywhere.
  if (name.includes(".")) return "contains '.', which BigQuery and parquet readers take for a path separator";
  return undefined;
}

/** Why a column name of the training file cannot be carried, or undefined. */
export function outputNameProblem(name: string): string | undefined {
  if (name.length > MAX_COLUMN_NAME_CHARS) return `is ${name.length} characters long after prefixing; BigQuery allows ${MAX_COLUMN_NAME_CHARS}`;
  return undefined;
}

/** Metadata values go out as HTTP-safe ASCII; plain names (letters, digits, `_`, `.`, `-`) stay as they are. */
export function metadataValue(name: string): string {
  return encodeURIComponent(name);
}

export const RENAME_FIX =
  "rename it in the warehouse to letters, digits and underscores (spaces, quotes, '/' and non-ASCII letters are carried as they are; '.' and control characters are not)";

// The Storage Read stand-in's reading of a read session's row_restriction, as strict as the
// service: BigQuery takes "SQL text filtering statement, similar to a WHERE clause", supporting
// comparisons between a column and a constant value joined by AND (no functions of columns, no
// aggregates). Accepted here:
//   column op constant          op: = != <> < <= > >=
//   column IS [NOT] NULL
//   column BETWEEN constant AND constant
// joined by AND; a column as a name or in backticks, which must exist in the table; a constant as
// a number, TRUE/FALSE, a 'string', TIMESTAMP|DATETIME|DATE '...' or CAST('...' AS TIMESTAMP|DATETIME|DATE).
// Anything else (DATE(column), OR, parentheses, an unknown column, a malformed timestamp, a
// TIMESTAMP compared with a DATETIME column or the other way round: BigQuery converts neither) is
// refused with a message, which the stand-in sends as INVALID_ARGUMENT. Returns DuckDB SQL.
// No vitest imports: `npm run standins` loads this from a plain Node process.

export class RestrictionError extends Error {}

type Token = { kind: "ident" | "string" | "number" | "op" | "word" | "punct"; text: string };

const TOKEN = /\s*(?:`((?:[^`\\]|\\.)+)`|'((?:[^'\\]|\\.|'')*)'|(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)|(<=|>=|!=|<>|=|<|>)|([A-Za-z_][A-Za-z0-9_]*)|([(),]))/y;
const TIMESTAMP_TEXT = /^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)?(?:Z|[+-]\d{2}(?::?\d{2})?| UTC)?$/;
const DATETIME_TEXT = /^\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)?$/;
const DATE_TEXT = /^\d{4}-\d{1,2}-\d{1,2}$/;

/** A constant as DuckDB SQL, and its BigQuery type (NUMBER, STRING, BOOL for untyped ones). */
interface Constant {
  sql: string;
  type: string;
}

function tokenize(text: string): Token[] {
  const out: Token[] = [];
  TOKEN.lastIndex = 0;
  let at = 0;
  while (at < text.length && text.slice(at).trim() !== "") {
    TOKEN.lastIndex = at;
    const m = TOKEN.exec(text);
    if (!m) throw new RestrictionError(`Syntax error at position ${at} of the row restriction: ${JSON.stringify(text.slice(at, at + 20))}`);
    at = TOKEN.lastIndex;
    if (m[1] !== undefined) out.push({ kind: "ident", text: m[1].replace(/\\(.)/g, "$1") });
    else if (m[2] !== undefined) out.push({ kind: "string", text: m[2].replace(/''/g, "'").replace(/\\(.)/g, "$1") });
    else if (m[3] !== undefined) out.push({ kind: "number", text: m[3] });
    else if (m[4] !== undefined) out.push({ kind: "op", text: m[4] });
    else if (m[5] !== undefined) out.push({ kind: "word", text: m[5] });
    else out.push({ kind: "punct", text: m[6]! });
  }
  return out;
}

const sqlString = (s: string) => `'${s.replaceAll("'", "''")}'`;
const sqlIdent = (s: string) => `"${s.replaceAll('"', '""')}"`;

/** A column of the table: its name and its BigQuery type name (TIMESTAMP, DATETIME, FLOAT64, ...). */
export interface RestrictionColumn {
  name: string;
  type: string;
}

/** The DuckDB WHERE clause for `restriction` over a table with `columns` (names as BigQuery matches them: case-insensitively). */
export function translateRowRestriction(restriction: string, columns: readonly RestrictionColumn[]): string {
  const tokens = tokenize(restriction);
  let i = 0;
  const peek = () => tokens[i];
  const word = (t: Token | undefined, w: string) => t?.kind === "word" && t.text.toUpperCase() === w;
  const expectWord = (w: string) => {
    if (!word(peek(), w)) throw new RestrictionError(`Expected ${w} but got ${peek()?.text ?? "the end"} in the row restriction`);
    i++;
  };

  const column = (): RestrictionColumn => {
    const t = tokens[i++];
    if (t?.kind === "word" && tokens[i]?.text === "(")
      throw new RestrictionError(`Function ${t.text}() is not supported in a row restriction: compare a column with a constant`);
    if (!t || !(t.kind === "ident" || (t.kind === "word" && !["AND", "OR", "NOT", "TIMESTAMP", "DATETIME", "DATE", "CAST"].includes(t.text.toUpperCase())))) {
      throw new RestrictionError(
        `Expected a column name but got ${t?.text ?? "the end"} in the row restriction (comparisons must be between a column and a constant)`,
      );
    }
    const found = columns.find((c) => c.name.toLowerCase() === t.text.toLowerCase());
    if (found === undefined) throw new RestrictionError(`Unrecognized name: ${t.text} in the row restriction`);
    return found;
  };

  const typed = (type: string, text: string): Constant => {
    if (type === "TIMESTAMP") {
      if (!TIMESTAMP_TEXT.test(text)) throw new RestrictionError(`Invalid TIMESTAMP literal '${text}' in the row restriction`);
      return { sql: `CAST(${sqlString(text.replace(/ UTC$/, "+00"))} AS TIMESTAMPTZ)`, type };
    }
    if (type === "DATETIME") {
      if (!DATETIME_TEXT.test(text)) throw new RestrictionError(`Invalid DATETIME literal '${text}' in the row restriction`);
      return { sql: `CAST(${sqlString(text)} AS TIMESTAMP)`, type };
    }
    if (type === "DATE") {
      if (!DATE_TEXT.test(text)) throw new RestrictionError(`Invalid DATE literal '${text}' in the row restriction`);
      return { sql: `CAST(${sqlString(text)} AS DATE)`, type };
    }
    throw new RestrictionError(`Type ${type} is not supported in a row restriction literal`);
  };

  const constant = (): Constant => {
    const t = tokens[i++];
    if (!t) throw new RestrictionError("Expected a constant but the row restriction ended");
    if (t.kind === "number") return { sql: t.text, type: "NUMBER" };
    if (t.kind === "string") return { sql: sqlString(t.text), type: "STRING" };
    if (t.kind === "word" && (t.text.toUpperCase() === "TRUE" || t.text.toUpperCase() === "FALSE")) return { sql: t.text.toUpperCase(), type: "BOOL" };
    if (t.kind === "word" && ["TIMESTAMP", "DATETIME", "DATE"].includes(t.text.toUpperCase())) {
      const s = tokens[i++];
      if (s?.kind !== "string") throw new RestrictionError(`Expected a quoted value after ${t.text} in the row restriction`);
      return typed(t.text.toUpperCase(), s.text);
    }
    if (word(t, "CAST")) {
      const open = tokens[i++];
      const s = tokens[i++];
      if (open?.text !== "(" || s?.kind !== "string") throw new RestrictionError("Expected CAST('value' AS TYPE) in the row restriction");
      expectWord("AS");
      const type = tokens[i++];
      if (type?.kind !== "word" || tokens[i++]?.text !== ")") throw new RestrictionError("Expected CAST('value' AS TYPE) in the row restriction");
      return typed(type.text.toUpperCase(), s.text);
    }
    throw new RestrictionError(`Expected a constant but got ${t.text} in the row restriction (comparisons must be between a column and a constant)`);
  };

  /** BigQuery compares a TIMESTAMP only with a TIMESTAMP, a DATETIME only with a DATETIME (a string literal is coerced). */
  const compared = (col: RestrictionColumn, op: string, c: Constant): string => {
    const times = ["TIMESTAMP", "DATETIME"];
    if ((times.includes(col.type) || times.includes(c.type)) && col.type !== c.type && c.type !== "STRING") {
      throw new RestrictionError(`No matching signature for operator ${op} for argument types: ${col.type}, ${c.type}`);
    }
    return c.sql;
  };

  const predicate = (): string => {
    const col = column();
    const name = sqlIdent(col.name);
    const t = peek();
    if (t?.kind === "op") {
      i++;
      return `${name} ${t.text === "!=" ? "<>" : t.text} ${compared(col, t.text, constant())}`;
    }
    if (word(t, "IS")) {
      i++;
      const not = word(peek(), "NOT");
      if (not) i++;
      expectWord("NULL");
      return `${name} IS ${not ? "NOT " : ""}NULL`;
    }
    if (word(t, "BETWEEN")) {
      i++;
      const low = compared(col, "BETWEEN", constant());
      expectWord("AND");
      return `${name} BETWEEN ${low} AND ${compared(col, "BETWEEN", constant())}`;
    }
    throw new RestrictionError(`Expected a comparison after ${col.name} but got ${t?.text ?? "the end"} in the row restriction`);
  };

  if (tokens.length === 0) throw new RestrictionError("The row restriction is empty");
  const parts = [predicate()];
  while (i < tokens.length) {
    expectWord("AND");
    parts.push(predicate());
  }
  return parts.map((p) => `(${p})`).join(" AND ");
}

// Identifier and literal quoting. Every identifier that reaches SQL goes through quoteIdent,
// whatever its source: table names come from INFORMATION_SCHEMA, not from people, but a name
// with a quote in it must still never change the statement.

export function quoteIdent(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

export function quoteString(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}

/** The day after an ISO date, for half-open ranges: DATE(t) BETWEEN a AND b == t >= a AND t < b+1. */
export function nextDay(isoDate: string): string {
  const d = new Date(`${isoDate}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

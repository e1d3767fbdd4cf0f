import { describe, expect, it } from "vitest";
import { TARGET_COLUMNS } from "../../src/constants.ts";
import { columnPrefix, planTables } from "../../src/discovery.ts";
import { JobError } from "../../src/errors.ts";
import { BIGQUERY_KEY_TYPES, DUCKDB_KEY_TYPES, type TableInfo } from "../../src/warehouse/port.ts";

const F = "bqx_ml_v3_features_v2";
const T = "bqx_ml_v3_analytics_v2";
const key = { name: "interval_time", type: "TIMESTAMP WITH TIME ZONE" };
const table = (name: string, cols: string[], dataset = F, withKey = true): TableInfo => ({
  dataset,
  name,
  columns: [...(withKey ? [key] : []), ...cols.map((c) => ({ name: c, type: "DOUBLE" }))],
});
/** The JobError `plan` throws (failing the test when it throws nothing or something else). */
function refusal(plan: () => unknown): JobError {
  let error: unknown;
  try {
    plan();
  } catch (err) {
    error = err;
  }
  expect(error).toBeInstanceOf(JobError);
  return error as JobError;
}
const targets = { dataset: T, tables: [table("targets_eurusd", [...TARGET_COLUMNS], T), table("targets_gbpusd", [...TARGET_COLUMNS], T)] };

describe("column prefixes", () => {
  it.each([
    ["agg_bqx_eurusd", "agg_bqx"],
    ["agg_eurusd", "agg"],
    ["cov_agg_eurusd_gbpusd", "cov_agg_gbpusd"],
    ["lag_eurusd_45", "lag_45"],
    ["lag_bqx_eurusd_w90", "lag_bqx_w90"],
    ["tri_agg_bqx_eur_usd_gbp", "tri_agg_bqx_eur_usd_gbp"],
    ["mkt_vol", "mkt_vol"],
    ["var_mom_idx_eur", "var_mom_idx_eur"],
    ["csi_agg_usd", "csi_agg_usd"],
  ])("%s -> %s", (name, prefix) => expect(columnPrefix(name, "eurusd")).toBe(prefix));
});

describe("table selection", () => {
  const features = {
    dataset: F,
    tables: [
      table("agg_eurusd", ["x", "pair"]),
      table("agg_bqx_eurusd", ["x"]),
      table("cov_agg_eurusd_gbpusd", ["c"]),
      table("tri_agg_bqx_eur_usd_gbp", ["t"]),
      table("mkt_vol", ["m"]),
      table("mkt_vol_summary", ["s"], F, false),
      table("var_mom_bqx_eur", ["v"]),
      table("csi_agg_usd", ["s"]),
      table("agg_gbpusd", ["x"]),
      table("targets_eurusd", ["decoy"]),
    ],
  };

  it("takes pair tables and the tri/mkt/var/csi families, never other pairs' tables", () => {
    const d = planTables("eurusd", features, targets, DUCKDB_KEY_TYPES);
    expect(d.features.map((t) => t.table)).toEqual([
      "agg_bqx_eurusd",
      "agg_eurusd",
      "cov_agg_eurusd_gbpusd",
      "csi_agg_usd",
      "mkt_vol",
      "targets_eurusd",
      "tri_agg_bqx_eur_usd_gbp",
      "var_mom_bqx_eur",
    ]);
    expect(d.target).toMatchObject({ dataset: T, table: "targets_eurusd", role: "target" });
    expect(d.target.columns).toHaveLength(49);
  });

  it("skips a table without interval_time with a logged reason, not by its name", () => {
    const d = planTables("eurusd", features, targets, DUCKDB_KEY_TYPES);
    expect(d.skipped).toEqual([{ dataset: F, table: "mkt_vol_summary", reason: "no interval_time column, so it cannot be joined" }]);
  });

  it("renames columns by the prefix rule and leaves out the key and pair columns", () => {
    const d = planTables("eurusd", features, targets, DUCKDB_KEY_TYPES);
    const agg = d.features.find((t) => t.table === "agg_eurusd")!;
    expect(agg.columns).toEqual([{ source: "x", target: "agg_x", type: "DOUBLE" }]);
    const cov = d.features.find((t) => t.table === "cov_agg_eurusd_gbpusd")!;
    expect(cov.columns).toEqual([{ source: "c", target: "cov_agg_gbpusd_c", type: "DOUBLE" }]);
    expect(d.columnCount).toBe(1 + 49 + 8);
  });

  it("fails naming the target table when it is missing from the targets dataset", () => {
    expect(() => planTables("eurusd", features, { dataset: T, tables: [] }, DUCKDB_KEY_TYPES)).toThrowError(
      /target table bqx_ml_v3_analytics_v2\.targets_eurusd not found/,
    );
  });

  it("fails when no feature table is found for the pair", () => {
    expect(() =>
      planTables(
        "usdjpy",
        { dataset: F, tables: [table("agg_eurusd", ["x"])] },
        { dataset: T, tables: [table("targets_usdjpy", [...TARGET_COLUMNS], T)] },
        DUCKDB_KEY_TYPES,
      ),
    ).toThrowError(/no feature tables for usdjpy/);
  });

  it("fails naming both tables when prefixed names collide", () => {
    const clash = { dataset: F, tables: [table("agg_eurusd", ["bqx_x"]), table("agg_bqx_eurusd", ["x"])] };
    let error: unknown;
    try {
      planTables("eurusd", clash, targets, DUCKDB_KEY_TYPES);
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(JobError);
    expect((error as JobError).message).toMatch(/column "agg_bqx_x" from "agg_eurusd\.bqx_x" collides with a column of "agg_bqx_eurusd"/);
  });

  it("refuses columns whose prefixed names differ only in case, and names longer than BigQuery allows", () => {
    const clash = { dataset: F, tables: [table("agg_eurusd", ["X"]), table("AGG_eurusd", ["x"]), table("mom_eurusd", ["y".repeat(300)])] };
    expect(() => planTables("eurusd", clash, targets, DUCKDB_KEY_TYPES)).toThrowError(
      /column "agg_X" from "agg_eurusd\.X" collides with a column of "AGG_eurusd" after prefixing \(names must differ in more than case\)/,
    );
    expect(() => planTables("eurusd", clash, targets, DUCKDB_KEY_TYPES)).toThrowError(
      /column "mom_y{300}" from "mom_eurusd\.y{300}" is 304 characters long after prefixing; BigQuery allows 300/,
    );
  });

  it("fails naming the table whose key has the wrong type", () => {
    const wrong: TableInfo = {
      dataset: F,
      name: "agg_eurusd",
      columns: [
        { name: "interval_time", type: "BIGINT" },
        { name: "x", type: "DOUBLE" },
      ],
    };
    expect(() => planTables("eurusd", { dataset: F, tables: [wrong] }, targets, DUCKDB_KEY_TYPES)).toThrowError(
      /agg_eurusd\.interval_time has type BIGINT; expected TIMESTAMP/,
    );
  });

  it("reads a key without a time zone as UTC, by each warehouse's own type names, and lists those tables", () => {
    const keyed = (name: string, type: string, dataset = F): TableInfo => ({
      dataset,
      name,
      columns: [
        { name: "interval_time", type },
        { name: "x", type: "DOUBLE" },
      ],
    });
    // DuckDB: TIMESTAMP has no zone, TIMESTAMP WITH TIME ZONE is an instant.
    const duck = planTables(
      "eurusd",
      { dataset: F, tables: [keyed("agg_eurusd", "TIMESTAMP"), keyed("mkt_vol", "TIMESTAMP WITH TIME ZONE")] },
      targets,
      DUCKDB_KEY_TYPES,
    );
    expect(duck.zonelessKeys).toEqual([`${F}.agg_eurusd`]);
    expect(duck.features.find((t) => t.table === "agg_eurusd")!.zonelessKey).toBe(true);
    expect(duck.features.find((t) => t.table === "mkt_vol")!.zonelessKey).toBeUndefined();
    // BigQuery: TIMESTAMP is the instant, DATETIME has no zone; the target counts too.
    const bqTargets = {
      dataset: T,
      tables: [
        {
          ...table("targets_eurusd", [...TARGET_COLUMNS], T),
          columns: [{ name: "interval_time", type: "DATETIME" }, ...TARGET_COLUMNS.map((c) => ({ name: c, type: "FLOAT64" }))],
        },
      ],
    };
    const bq = planTables("eurusd", { dataset: F, tables: [keyed("agg_eurusd", "TIMESTAMP"), keyed("mkt_vol", "DATETIME")] }, bqTargets, BIGQUERY_KEY_TYPES);
    expect(bq.zonelessKeys).toEqual([`${T}.targets_eurusd`, `${F}.mkt_vol`]);
    expect(bq.target.zonelessKey).toBe(true);
  });

  it("refuses every table whose key is text, a number or a timestamp it cannot read, naming each one, in one error", () => {
    const keyed = (name: string, type: string): TableInfo => ({
      dataset: F,
      name,
      columns: [
        { name: "interval_time", type },
        { name: "x", type: "DOUBLE" },
      ],
    });
    const tables = [keyed("agg_eurusd", "VARCHAR"), keyed("agg_bqx_eurusd", "TIMESTAMP"), keyed("mkt_vol", "BIGINT"), keyed("csi_agg_usd", "TIMESTAMP_NS")];
    const message = refusal(() => planTables("eurusd", { dataset: F, tables }, targets, DUCKDB_KEY_TYPES)).message;
    expect(message).toMatch(/discovery found 3 problem\(s\)/);
    expect(message).toContain(
      `${F}.agg_eurusd.interval_time has type VARCHAR; expected TIMESTAMP WITH TIME ZONE (a UTC instant) or TIMESTAMP (no time zone: read as UTC)`,
    );
    expect(message).toContain(`${F}.mkt_vol.interval_time has type BIGINT`);
    expect(message).toContain(`${F}.csi_agg_usd.interval_time has type TIMESTAMP_NS`);
    expect(message).not.toContain("agg_bqx_eurusd.interval_time");
    // On BigQuery a STRING key is refused with BigQuery's names in the message.
    expect(() => planTables("eurusd", { dataset: F, tables: [keyed("agg_eurusd", "STRING")] }, targets, BIGQUERY_KEY_TYPES)).toThrowError(
      /agg_eurusd\.interval_time has type STRING; expected TIMESTAMP \(a UTC instant\) or DATETIME/,
    );
  });

  it("refuses, before anything is read, feature columns whose type the file cannot hold the same way from both warehouses", () => {
    const odd: TableInfo = {
      dataset: F,
      name: "agg_eurusd",
      columns: [
        { name: "interval_time", type: "TIMESTAMP WITH TIME ZONE" },
        { name: "x", type: "DECIMAL(18,3)" },
        { name: "y", type: "NUMERIC" },
        { name: "ok", type: "FLOAT64" },
      ],
    };
    expect(() => planTables("eurusd", { dataset: F, tables: [odd] }, targets, DUCKDB_KEY_TYPES)).toThrowError(
      /agg_eurusd has 2 column\(s\) of types the training file cannot hold: x \(DECIMAL\(18,3\)\), y \(NUMERIC\); store features as FLOAT64 \(DOUBLE\), INT64/,
    );
  });

  it("reads BigQuery's and DuckDB's names for the same types alike", async () => {
    const { columnKind } = await import("../../src/discovery.ts");
    expect(["FLOAT64", "DOUBLE", "INT64", "BIGINT", "INTEGER", "BOOL", "BOOLEAN", "STRING", "VARCHAR", "DATE", "JSON"].map(columnKind)).toEqual([
      "float64",
      "float64",
      "int64",
      "int64",
      "int64",
      "bool",
      "bool",
      "utf8",
      "utf8",
      "date",
      undefined,
    ]);
  });
});

describe("names", () => {
  const odd = ["agg_eurusd it's", 'agg_eurusd "q"', "agg_eurusd `b`", "agg_eurusd/up", "agg_eurusd_é€"];

  it("carries quotes, backticks, spaces, slashes and non-ASCII letters in table and column names as they are", () => {
    const tables = odd.map((name, i) => table(name, [`c${i} it's`, `c${i} "q"`, `c${i} \`b\``, `c${i}/\\x`, `c${i}_ü`]));
    const plan = planTables("eurusd", { dataset: F, tables }, targets, DUCKDB_KEY_TYPES);
    expect(plan.features.map((t) => t.table).sort()).toEqual([...odd].sort());
    const slashed = plan.features.find((t) => t.table === "agg_eurusd/up")!;
    expect(slashed.prefix).toBe("agg_/up");
    expect(slashed.columns.map((c) => c.target)).toEqual(["agg_/up_c3 it's", 'agg_/up_c3 "q"', "agg_/up_c3 `b`", "agg_/up_c3/\\x", "agg_/up_c3_ü"]);
  });

  it("refuses, naming every offending table and the fix, names with '.' (so '..'), control characters or lone surrogates", () => {
    const tables = [
      table("agg_eurusd/../../etc", ["x"]),
      table("agg_eurusd.v2", ["x"]),
      table("mom_eurusd", ["ok", "line\nbreak", "a.b"]),
      table("lag_eurusd\u0000", ["x"]),
      table("rsi_eurusd", ["bad\ud800"]),
      table("cov_eurusd", ["fine it's"]),
    ];
    const message = refusal(() => planTables("eurusd", { dataset: F, tables }, targets, DUCKDB_KEY_TYPES)).message;
    expect(message).toMatch(/^discovery found 5 problem\(s\)/);
    expect(message).toContain(`table "${F}.agg_eurusd/../../etc": its name contains '.'`);
    expect(message).toContain(
      `table "${F}.agg_eurusd.v2": its name contains '.', which BigQuery and parquet readers take for a path separator; rename it in the warehouse`,
    );
    expect(message).toContain(
      `table "${F}.mom_eurusd": column "line\\nbreak" contains a control character (a newline, tab, NUL, ...), column "a.b" contains '.'`,
    );
    expect(message).toContain(`table "${F}.lag_eurusd\\u0000": its name contains a control character`);
    expect(message).toContain(`table "${F}.rsi_eurusd": column "bad\\ud800" is not valid Unicode`);
    expect(message).not.toContain("cov_eurusd");
    expect(message.split("\n")).toHaveLength(6);
  });
});

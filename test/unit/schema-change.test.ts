import { describe, expect, it } from "vitest";
import { compareSchemas, describeSchemaChange, hasDrift } from "../../src/schema-change.ts";

const previous = {
  rows: 100,
  columns: 4,
  file: {
    generation: "7",
    schema: {
      "t.targets_eurusd": { interval_time: "INT64 TIMESTAMP(MICROS,UTC)" },
      "f.agg_eurusd": { agg_x: "INT64", agg_y: "DOUBLE" },
      "f.mom_eurusd": { mom_z: "DOUBLE" },
    },
  },
  run: { createdAt: "2026-01-01T00:00:00.000Z" },
};

describe("compareSchemas", () => {
  it("names added, removed and retyped columns and the tables that came and went", () => {
    const current = {
      rows: 90,
      schema: {
        "t.targets_eurusd": { interval_time: "INT64 TIMESTAMP(MICROS,UTC)" },
        "f.agg_eurusd": { agg_x: "DOUBLE", agg_w: "DOUBLE" },
        "f.new_eurusd": { new_a: "INT64" },
      },
    };
    const change = compareSchemas("warn", current, previous);
    expect(change).toEqual({
      policy: "warn",
      previous: { rows: 100, columns: 4, generation: "7", createdAt: "2026-01-01T00:00:00.000Z" },
      added: ["agg_w", "new_a"],
      removed: ["agg_y", "mom_z"],
      retyped: [{ column: "agg_x", table: "f.agg_eurusd", from: "INT64", to: "DOUBLE" }],
      tablesAdded: ["f.new_eurusd"],
      tablesRemoved: ["f.mom_eurusd"],
      rowsChange: -10,
    });
    expect(hasDrift(change)).toBe(true);
    expect(describeSchemaChange(change)).toBe(
      "1 tables added (f.new_eurusd); 1 tables removed (f.mom_eurusd); 2 columns added (agg_w, new_a); 2 columns removed (agg_y, mom_z); 1 columns retyped (agg_x INT64 -> DOUBLE); rows -10",
    );
  });

  it("counts a row count's change alone as no drift", () => {
    const change = compareSchemas("fail", { rows: 120, schema: previous.file.schema }, previous);
    expect(hasDrift(change)).toBe(false);
    expect(describeSchemaChange(change)).toBe("no columns or tables changed; rows +20");
  });

  it("lists the first five names of a kind and how many more", () => {
    const many = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`c${i}`, "DOUBLE"]));
    const change = compareSchemas("warn", { rows: 100, schema: { ...previous.file.schema, "f.wide": many } }, previous);
    expect(describeSchemaChange(change)).toContain("8 columns added (c0, c1, c2, c3, c4, ... (3 more))");
  });

  it("compares nothing on a first build, and only tables and rows with a manifest written before `schema`", () => {
    expect(compareSchemas("fail", { rows: 1, schema: {} }, undefined)).toMatchObject({
      previous: null,
      notCompared: expect.stringContaining("first build"),
      rowsChange: null,
    });
    const old = {
      rows: 100,
      query: { FEATURES_DATASET: "f", TARGETS_DATASET: "t" },
      tables: { target: { table: "t.targets_eurusd" }, features: [{ table: "agg_eurusd" }, { table: "f.mom_eurusd" }] },
    };
    const change = compareSchemas("fail", { rows: 100, schema: { "t.targets_eurusd": {}, "f.agg_eurusd": { agg_q: "DOUBLE" } } }, old);
    expect(change).toMatchObject({ added: [], tablesAdded: [], tablesRemoved: ["f.mom_eurusd"], notCompared: expect.stringContaining("no schema") });
  });
});

// schema_sha256: the text it hashes, read from real parquet footers written by DuckDB and polars.
import { createHash } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import pl from "nodejs-polars";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readRawFooter } from "../../src/parquet/footer.ts";
import { schemaSha256, schemaText } from "../../src/parquet/index.ts";

let dir: string;

async function duckdbParquet(name: string, select: string): Promise<string> {
  const file = path.join(dir, name);
  const instance = await DuckDBInstance.create(":memory:");
  const c = await instance.connect();
  try {
    await c.run("SET TimeZone = 'UTC'");
    await c.run(`COPY (${select}) TO '${file}' (FORMAT parquet)`);
  } finally {
    c.closeSync();
    instance.closeSync();
  }
  return file;
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), "schema-hash-"));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe("schemaText and schemaSha256", () => {
  it("lists every column in order with its physical and logical type", async () => {
    const file = await duckdbParquet(
      "types.parquet",
      `SELECT TIMESTAMPTZ '2020-01-01 00:00:00+00' AS interval_time, 1.5::DOUBLE AS f, 7::BIGINT AS big, 7::INTEGER AS i,
              'x' AS s, DATE '2020-01-02' AS d, 12.34::DECIMAL(18,2) AS dec, true AS b, 3::SMALLINT AS small, 4::UBIGINT AS u`,
    );
    const text = schemaText((await readRawFooter(file)).thrift);
    expect(text.split("\n").filter(Boolean)).toEqual([
      "interval_time\tINT64\tTIMESTAMP(MICROS,UTC)",
      "f\tDOUBLE\t-",
      "big\tINT64\t-",
      "i\tINT32\t-",
      "s\tBYTE_ARRAY\tSTRING",
      "d\tINT32\tDATE",
      "dec\tINT64\tDECIMAL(18,2)",
      "b\tBOOLEAN\t-",
      "small\tINT32\tINT(16,signed)",
      "u\tINT64\tINT(64,unsigned)",
    ]);
    expect(await schemaSha256(file)).toBe(createHash("sha256").update(text).digest("hex"));
  });

  it("is the same for the same columns whoever wrote the file and whatever the values, and differs when a type changes", async () => {
    const polars = path.join(dir, "polars.parquet");
    pl.DataFrame({ x: [0.25, 3], y: ["q", null], n: [1, 2] }, { schema: { x: pl.Float64, y: pl.String, n: pl.Int64 } }).writeParquet(polars);
    const duck = await duckdbParquet("duck.parquet", "SELECT range::DOUBLE AS x, 'a' || range AS y, range::BIGINT AS n FROM range(10)");
    const otherType = await duckdbParquet("other.parquet", "SELECT range::BIGINT AS x, 'a' AS y, range::BIGINT AS n FROM range(3)");
    const renamed = await duckdbParquet("renamed.parquet", "SELECT range::DOUBLE AS z, 'a' AS y, range::BIGINT AS n FROM range(3)");
    expect(await schemaSha256(polars)).toBe(await schemaSha256(duck));
    expect(await schemaSha256(otherType)).not.toBe(await schemaSha256(duck));
    expect(await schemaSha256(renamed)).not.toBe(await schemaSha256(duck));
  });
});

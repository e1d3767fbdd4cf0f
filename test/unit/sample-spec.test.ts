// The pure description of the sample warehouse matches the production shape (REFERENCE.md).
import { describe, expect, it } from "vitest";
import { PAIRS, TARGET_COLUMNS } from "../../src/constants.ts";
import { coveredRows, tableCoverage, targetNullTailRows, trainingRowCount } from "../../standins/sample/coverage.ts";
import { covPartners, decoyPairs, sampleTables, valueSeed, type SampleTable } from "../../standins/sample/spec.ts";

const SHARED = /^(tri|mkt|var|csi)_/;

/** The job's prefix rule, written again so the test does not trust the code under test. */
function prefixOf(table: string, pair: string): string {
  return SHARED.test(table) ? table : table.replace(`_${pair}`, "");
}

function forPair(pair: string) {
  const all = sampleTables(pair);
  const features = all.filter((t) => t.dataset === "features" && (t.forPair === pair || t.forPair === null));
  const keyed = features.filter((t) => t.hasIntervalTime);
  return { all, features, keyed };
}

const count = (tables: SampleTable[], pred: (t: SampleTable) => boolean) => tables.filter(pred).length;
const columns = (tables: SampleTable[]) => tables.reduce((n, t) => n + t.columns.length, 0);

describe("sampleTables for eurusd", () => {
  const P = "eurusd";
  const { all, features, keyed } = forPair(P);

  it("has 667 feature tables with interval_time and two mkt summaries without", () => {
    expect(keyed).toHaveLength(667);
    expect(features).toHaveLength(669);
    const withoutKey = features.filter((t) => !t.hasIntervalTime).map((t) => t.name);
    expect(withoutKey).toHaveLength(2);
    for (const name of withoutKey) expect(name).toMatch(/^mkt_\w+_summary$/);
  });

  it("has exactly 16,988 feature columns over the 667 tables", () => {
    expect(columns(keyed)).toBe(16_988);
  });

  it("has the family table counts of the real data", () => {
    expect(count(keyed, (t) => t.name.includes(P))).toBe(256);
    expect(count(keyed, (t) => t.name.startsWith("tri_"))).toBe(194);
    expect(count(features, (t) => t.name.startsWith("mkt_"))).toBe(12);
    expect(count(keyed, (t) => t.name.startsWith("mkt_"))).toBe(10);
    expect(count(keyed, (t) => t.name.startsWith("var_"))).toBe(63);
    expect(count(keyed, (t) => t.name.startsWith("csi_"))).toBe(144);
    // The four selection rules cover every table exactly once.
    expect(256 + 194 + 12 + 63 + 144).toBe(features.length);
  });

  it("has the per-family shapes of REFERENCE.md", () => {
    const fam = (f: string) => keyed.filter((t) => t.family === f);
    const widths: Record<string, number> = { agg: 64, align: 42, mom: 43, vol: 31, reg: 232, der: 15, div: 6, mrt: 10, rev: 10 };
    for (const [f, width] of Object.entries(widths)) {
      expect(
        fam(f)
          .map((t) => t.name)
          .sort(),
      ).toEqual([`${f}_${P}`, `${f}_bqx_${P}`, `${f}_idx_${P}`].sort());
      for (const t of fam(f)) expect(t.columns).toHaveLength(width);
    }
    expect([fam("base").length, fam("cyc").length, fam("ext").length, fam("tmp").length]).toEqual([2, 1, 1, 1]);
    expect([columns(fam("base")), columns(fam("cyc")), columns(fam("ext")), columns(fam("tmp"))]).toEqual([19, 4, 16, 23]);
    expect(fam("lag")).toHaveLength(8);
    expect(fam("lag").map((t) => t.name)).toEqual(expect.arrayContaining([`lag_${P}_45`, `lag_bqx_${P}_w90`]));
    for (const t of fam("lag")) {
      expect(t.columns.length).toBeGreaterThanOrEqual(10);
      expect(t.columns.length).toBeLessThanOrEqual(11);
    }
    expect(fam("regime")).toHaveLength(4);
    for (const t of fam("regime")) {
      expect(t.columns.length).toBeGreaterThanOrEqual(13);
      expect(t.columns.length).toBeLessThanOrEqual(19);
    }
    expect(fam("corr")).toHaveLength(32);
    for (const asset of ["ewa", "ewg", "ewj", "ewu", "gld", "spy", "uup", "vix"]) expect(count(fam("corr"), (t) => t.name.endsWith(`_${asset}`))).toBe(4);
    for (const t of fam("corr")) expect([7, 8]).toContain(t.columns.length);
    expect(fam("cov")).toHaveLength(180);
    for (const t of fam("cov")) {
      expect(t.name).toMatch(new RegExp(`^cov_[a-z]+_${P}_[a-z]{6}$`));
      expect(t.columns.length).toBeGreaterThanOrEqual(12);
      expect(t.columns.length).toBeLessThanOrEqual(15);
    }
    for (const t of fam("tri")) {
      expect(t.name).toMatch(/^tri_[a-z]+_(bqx|idx)_[a-z]{3}_[a-z]{3}_[a-z]{3}$/);
      if (t.name.startsWith("tri_reg_")) expect(t.columns.length).toBeGreaterThan(14);
      else expect(t.columns).toHaveLength(14);
    }
    expect(columns(fam("mkt"))).toBe(150);
    for (const t of fam("var")) expect(t.name).toMatch(/^var_[a-z]+_(bqx|idx)_[a-z]{3}$/);
    expect(columns(fam("var"))).toBe(973);
    expect(columns(fam("csi"))).toBe(5_232);
    for (const ccy of ["eur", "gbp", "usd", "jpy", "chf", "aud", "cad", "nzd"]) expect(count(fam("csi"), (t) => t.name.endsWith(`_${ccy}`))).toBe(18);
  });

  it("has cov tables for the 12 pairs sharing a currency", () => {
    const partners = covPartners(P);
    expect(partners).toHaveLength(12);
    for (const other of partners) expect(other.includes("eur") || other.includes("usd")).toBe(true);
    expect(new Set(keyed.filter((t) => t.family === "cov").map((t) => t.name.split("_").at(-1))).size).toBe(12);
  });

  it("has the target table with the 49 target columns in the targets dataset", () => {
    const targets = all.filter((t) => t.dataset === "targets" && t.forPair === P);
    expect(targets).toHaveLength(1);
    expect(targets[0]!.name).toBe(`targets_${P}`);
    expect(targets[0]!.hasIntervalTime).toBe(true);
    expect(targets[0]!.columns.map((c) => c.name)).toEqual([...TARGET_COLUMNS]);
    expect(targets[0]!.columns).toHaveLength(49);
    expect(all.filter((t) => t.dataset === "features" && t.name.startsWith("targets_"))).toEqual([]);
  });

  it("has 16 entirely null corr_etf_idx columns and no other entirely null feature column", () => {
    const entirelyNull = keyed.flatMap((t) => t.columns.filter((c) => c.nullRate === 1).map((c) => `${t.name}.${c.name}`));
    expect(entirelyNull).toHaveLength(16);
    for (const name of entirelyNull) expect(name).toMatch(/^corr_etf_idx_/);
  });

  it("has the family null rates of the real file", () => {
    const mean = (tables: SampleTable[]) => tables.reduce((s, t) => s + t.columns.reduce((a, c) => a + c.nullRate, 0), 0) / columns(tables);
    const byFamily = (f: string) => keyed.filter((t) => t.family === f);
    expect(mean(byFamily("corr"))).toBeCloseTo(0.53, 3);
    expect(mean(byFamily("tri"))).toBeCloseTo(0.24, 3);
    expect(mean(byFamily("cov"))).toBeCloseTo(0.1, 3);
    expect(mean(byFamily("mkt"))).toBeCloseTo(0.08, 3);
    expect(mean(byFamily("var"))).toBeCloseTo(0.075, 3);
    expect(mean(byFamily("csi"))).toBeCloseTo(0.019, 3);
    const pairLevel = keyed.filter((t) => !["corr", "tri", "cov", "mkt", "var", "csi"].includes(t.family));
    expect(pairLevel).toHaveLength(256 - 32 - 180);
    expect(mean(pairLevel)).toBeLessThan(0.01);
    for (const t of pairLevel) for (const c of t.columns) expect(c.nullRate).toBeLessThan(0.01);
    // Rates vary per column around the family mean.
    const corrRates = new Set(byFamily("corr").flatMap((t) => t.columns.map((c) => c.nullRate)));
    expect(corrRates.size).toBeGreaterThan(200);
    for (const t of all) for (const c of t.columns) expect(c.nullRate >= 0 && c.nullRate <= 1).toBe(true);
    expect(mean(keyed)).toBeGreaterThan(0.12);
    expect(mean(keyed)).toBeLessThan(0.13);
  });

  it("names columns in lower-case snake case, unique within a table, never the key or pair", () => {
    for (const t of all) {
      const names = t.columns.map((c) => c.name);
      expect(new Set(names).size, t.name).toBe(names.length);
      for (const n of names) {
        expect(n).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
        expect(n).not.toBe("interval_time");
        expect(n).not.toBe("pair");
        expect(n.startsWith(t.name)).toBe(false);
      }
      expect(t.name).toMatch(/^[a-z][a-z0-9]*(_[a-z0-9]+)*$/);
    }
    expect(new Set(all.map((t) => `${t.dataset}.${t.name}`)).size).toBe(all.length);
  });

  it("gives 16,988 unique names after prefixing, none colliding with a target column", () => {
    const names = keyed.flatMap((t) => t.columns.map((c) => `${prefixOf(t.name, P)}_${c.name}`));
    expect(names).toHaveLength(16_988);
    const seen = new Set<string>(["interval_time", ...TARGET_COLUMNS]);
    const dupes = names.filter((n) => (seen.has(n) ? true : (seen.add(n), false)));
    expect(dupes).toEqual([]);
  });

  it("has decoys of two pairs that share no currency, which discovery must not pick up", () => {
    const decoys = all.filter((t) => t.forPair !== P && t.forPair !== null);
    const [q1, q2] = decoyPairs(P);
    expect(new Set(decoys.map((t) => t.forPair))).toEqual(new Set([q1, q2]));
    for (const q of [q1, q2]) {
      expect(q.slice(0, 3) === "eur" || q.slice(0, 3) === "usd" || q.slice(3) === "eur" || q.slice(3) === "usd").toBe(false);
      expect(decoys.map((t) => `${t.dataset}.${t.name}`)).toEqual(
        expect.arrayContaining([`features.agg_${q}`, `features.mom_bqx_${q}`, `features.lag_${q}_45`, `targets.targets_${q}`]),
      );
    }
    for (const t of decoys) {
      expect(t.name.includes(P)).toBe(false);
      expect(SHARED.test(t.name)).toBe(false);
    }
    // Production discovery rules select exactly the pair's 669 feature tables.
    const discovered = all.filter((t) => t.dataset === "features" && (t.name.includes(P) || SHARED.test(t.name)));
    expect(discovered.map((t) => t.name).sort()).toEqual(features.map((t) => t.name).sort());
  });

  it("marks some feature tables as having a pair column", () => {
    expect(count(keyed, (t) => t.hasPairColumn)).toBeGreaterThan(0);
    expect(count(keyed, (t) => !t.hasPairColumn)).toBeGreaterThan(0);
    for (const t of keyed) if (t.forPair === null) expect(t.hasPairColumn).toBe(false);
  });

  it("is deterministic and returns copies", () => {
    const a = sampleTables(P);
    const b = sampleTables(P);
    expect(b).toEqual(a);
    a[0]!.columns[0]!.nullRate = 42;
    a.pop();
    expect(sampleTables(P)).toEqual(b);
  });

  it("shares the tri/mkt/var/csi tables between pairs", () => {
    const shared = (pair: string) => sampleTables(pair).filter((t) => t.forPair === null);
    expect(shared("gbpjpy")).toEqual(shared(P));
  });

  it("rejects an unknown pair", () => {
    expect(() => sampleTables("EURUSD")).toThrow(/unknown pair/);
    expect(() => sampleTables("xyzabc")).toThrow(/unknown pair/);
  });
});

describe("sampleTables for every pair", () => {
  it.each([...PAIRS])("%s: 667 + 2 tables, 16,988 unique prefixed columns, clean decoys", (pair) => {
    const { all, features, keyed } = forPair(pair);
    expect(keyed).toHaveLength(667);
    expect(features).toHaveLength(669);
    expect(columns(keyed)).toBe(16_988);
    expect(count(keyed, (t) => t.name.includes(pair))).toBe(256);
    expect(count(keyed, (t) => t.family === "cov")).toBe(180);
    const names = keyed.flatMap((t) => t.columns.map((c) => `${prefixOf(t.name, pair)}_${c.name}`));
    expect(new Set(names).size).toBe(16_988);
    const decoys = all.filter((t) => t.forPair !== pair && t.forPair !== null);
    expect(decoys.length).toBeGreaterThan(0);
    for (const t of decoys) {
      expect(t.name.includes(pair)).toBe(false);
      expect(SHARED.test(t.name)).toBe(false);
    }
    expect(count(all, (t) => t.dataset === "targets" && t.forPair === pair)).toBe(1);
    expect(count(keyed, (t) => t.columns.some((c) => c.nullRate === 1))).toBe(8);
    // Every column of the warehouse gets its own value seed, so no two columns are copies.
    const seeds = all.flatMap((t) => t.columns.map((c) => valueSeed(t.name, c.name)));
    expect(new Set(seeds).size).toBe(seeds.length);
  });
});

describe("coverage helpers", () => {
  it("counts the rows a table holds, never more than the target range", () => {
    for (const t of sampleTables("eurusd").filter((x) => x.hasIntervalTime)) {
      const cov = tableCoverage(t);
      for (const rows of [1, 7, 300, 2000]) {
        let expected = 0;
        for (let i = 0; i < rows; i++) {
          if (i >= cov.startOffset && (cov.gapEvery === null || i % cov.gapEvery !== cov.gapPhase)) expected++;
        }
        expect(coveredRows(cov, rows)).toBe(expected);
      }
    }
  });

  it("makes some families start late or miss minutes, and never the target", () => {
    const tables = sampleTables("eurusd");
    const partial = tables.filter((t) => t.hasIntervalTime && coveredRows(tableCoverage(t), 2000) < 2000);
    expect(new Set(partial.map((t) => t.family))).toEqual(new Set(["lag", "corr", "cov", "tri", "mkt", "var", "csi"]));
    expect(coveredRows(tableCoverage(tables.find((t) => t.name === "targets_eurusd")!), 2000)).toBe(2000);
  });

  it("leaves the last ~1 % of target_bqx45_h15 null", () => {
    expect(targetNullTailRows("target_bqx45_h15", 2000)).toBe(20);
    expect(targetNullTailRows("target_bqx45_h105", 2000)).toBe(110);
    expect(targetNullTailRows("target_bqx45_h15", 50)).toBe(1);
    expect(trainingRowCount(2000)).toBe(1980);
    expect(trainingRowCount(177_748)).toBe(177_748 - 1778);
  });
});

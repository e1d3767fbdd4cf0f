// The deterministic sample warehouse, described without any I/O: every table, its columns and
// their null rates, shaped like the production datasets (../../../shared/REFERENCE.md):
// 667 feature tables with interval_time (+2 mkt summaries without), 16,988 feature columns,
// the 49-column target table, and decoy tables of other pairs that discovery must leave alone.
// build.ts turns this into a DuckDB file; tests use it as the expected answer.
import { PAIRS, TARGET_COLUMNS, targetTableName } from "../../src/constants.ts";

export interface SampleColumn {
  name: string;
  /** 0..1; 1 = entirely null. */
  nullRate: number;
}

export interface SampleTable {
  dataset: "features" | "targets";
  name: string;
  family: string;
  /** Excluding interval_time and pair. */
  columns: SampleColumn[];
  hasIntervalTime: boolean;
  hasPairColumn: boolean;
  /** The pair this table belongs to; null for the shared families tri/mkt/var/csi. */
  forPair: string | null;
}

/** Which minutes of [0, rows) a table holds: from startOffset on, minus i % gapEvery === gapPhase. */
// ---- sizes of the real data (REFERENCE.md "Families for one pair") -------------------------

export const SAMPLE_FEATURE_TABLES = 667;
export const SAMPLE_FEATURE_COLUMNS = 16_988;
export const SAMPLE_PAIR_TABLES = 256;

/** Family mean null rates of the real EURUSD file; pair-level families are "< 1 %". */
export const FAMILY_NULL_RATES: Readonly<Record<string, number>> = {
  corr: 0.53,
  tri: 0.24,
  cov: 0.1,
  mkt: 0.08,
  var: 0.075,
  csi: 0.019,
  pair: 0.004,
};

const CURRENCIES = ["eur", "gbp", "usd", "jpy", "chf", "aud", "cad", "nzd"] as const;
const WINDOWS = [45, 90, 180, 360, 720, 1440, 2880] as const;
const W_WINDOWS = WINDOWS.map((w) => `w${w}`);
const SUFFIXES = ["", "_d1", "_rank", "_ema"] as const;

/** The nine families with three tables each (`<fam>_P`, `<fam>_bqx_P`, `<fam>_idx_P`). */
const TRIPLE_FAMILIES: ReadonlyArray<{ family: string; width: number; stems: string[]; windows?: readonly string[]; suffixes?: readonly string[] }> = [
  { family: "agg", width: 64, stems: ["mean", "std", "min", "max", "range", "median", "skew", "kurt", "q25", "q75"] },
  { family: "align", width: 42, stems: ["score", "lead", "lag", "agree", "sign", "corr"] },
  { family: "mom", width: 43, stems: ["roc", "rsi", "macd", "macd_signal", "accel", "zscore", "stoch"] },
  { family: "vol", width: 31, stems: ["atr", "std", "parkinson", "garman_klass", "range", "ewm"] },
  {
    family: "reg",
    width: 232,
    stems: ["slope", "intercept", "r2", "resid_std", "resid_last", "quad_coef", "curvature", "tstat", "forecast_15", "dev", "dev_z", "angle"],
    windows: W_WINDOWS,
    suffixes: ["", "_d1", "_rank"],
  },
  { family: "der", width: 15, stems: ["d1", "d2", "d3"] },
  { family: "div", width: 6, stems: ["gap", "z"] },
  { family: "mrt", width: 10, stems: ["halflife", "z"] },
  { family: "rev", width: 10, stems: ["prob", "signal"] },
];

const CORR_ASSETS = ["ewa", "ewg", "ewj", "ewu", "gld", "spy", "uup", "vix"] as const;
const CORR_VARIANTS = ["bqx", "idx", "etf_bqx", "etf_idx"] as const;
/** Columns of corr_etf_idx_* tables that hold no value at all (2 x 8 tables = 16). */
const CORR_ETF_IDX_NULL_COLUMNS = ["corr_1440", "corr_2880"];

/** 15 covariance types and their widths (12-15 columns; 12 x sum = 2,412 columns). */
const COV_TYPES: ReadonlyArray<readonly [string, number]> = [
  ["agg", 14],
  ["align", 13],
  ["beta", 12],
  ["coint", 12],
  ["corr", 15],
  ["der", 13],
  ["disp", 14],
  ["div", 12],
  ["mom", 14],
  ["mrt", 13],
  ["ratio", 15],
  ["reg", 15],
  ["rev", 13],
  ["spread", 14],
  ["vol", 12],
];
const COV_PARTNERS = 12;

/** Triangles of the tri family; every tri family covers all 14 except der (13): 97 x 2 = 194 tables. */
const TRIANGLES = [
  "eur_usd_gbp",
  "eur_usd_jpy",
  "eur_usd_chf",
  "eur_usd_aud",
  "eur_usd_cad",
  "eur_usd_nzd",
  "gbp_usd_jpy",
  "gbp_usd_chf",
  "aud_usd_jpy",
  "aud_usd_nzd",
  "nzd_usd_jpy",
  "usd_cad_jpy",
  "usd_chf_jpy",
  "eur_gbp_jpy",
] as const;
const TRI_FAMILIES: ReadonlyArray<readonly [string, number]> = [
  ["agg", 14],
  ["align", 14],
  ["corr", 14],
  ["der", 13],
  ["mom", 14],
  ["reg", 14],
  ["vol", 14],
];
const TRI_WIDTH = 14;

/** mkt: 10 tables with interval_time (150 columns) and two summaries without. */
const MKT_TABLES: ReadonlyArray<readonly [string, number]> = [
  ["breadth", 18],
  ["dispersion", 14],
  ["volatility", 16],
  ["correlation", 15],
  ["momentum", 17],
  ["regime", 12],
  ["liquidity", 13],
  ["session", 11],
  ["stress", 19],
  ["trend", 15],
];
const MKT_SUMMARIES: ReadonlyArray<readonly [string, string[]]> = [
  ["daily_summary", ["n_pairs", "mean_ret", "mean_vol", "max_abs_ret", "breadth", "dispersion"]],
  ["session_summary", ["asia_vol", "london_vol", "ny_vol", "asia_ret", "ny_ret"]],
];

/** var: family x bqx/idx x 8 currencies = 64, minus the last (var_reg_idx_nzd) = 63 tables, 973 columns. */
const VAR_FAMILIES: ReadonlyArray<readonly [string, number]> = [
  ["agg", 16],
  ["align", 12],
  ["mom", 15],
  ["reg", 19],
];
const VAR_TABLES = 63;

/** csi: 9 families x bqx/idx per currency = 18 tables, 654 columns; x 8 currencies = 144 tables, 5,232 columns. */
const CSI_FAMILIES: ReadonlyArray<readonly [string, number]> = [
  ["agg", 48],
  ["align", 32],
  ["mom", 33],
  ["vol", 24],
  ["reg", 120],
  ["der", 14],
  ["div", 18],
  ["mrt", 19],
  ["rev", 19],
];

// ---- deterministic hashing ---------------------------------------------------------------

/** FNV-1a, 32 bits: a small seeded hash of a name (no Math.random anywhere). */
export function nameHash(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // Final avalanche so that names differing in one trailing character spread over [0, 1).
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return h >>> 0;
}

/**
 * The 32-bit seed of a column's values (build.ts hashes `i + seed * 2^20`). Unique over every
 * column of a pair's warehouse (unit-tested), so no two columns hold the same values.
 */
export function valueSeed(table: string, column: string): number {
  return nameHash(`${table}.${column}`);
}

function unit(text: string): number {
  return nameHash(text) / 2 ** 32;
}

// ---- column names ------------------------------------------------------------------------

/** `<stem>_<window><suffix>`, suffix-major then stem then window; exactly n names, or a throw. */
function gridColumns(n: number, stems: readonly string[], windows: readonly (string | number)[] = WINDOWS, suffixes: readonly string[] = SUFFIXES): string[] {
  const out: string[] = [];
  for (const suffix of suffixes) {
    for (const stem of stems) {
      for (const w of windows) {
        if (out.length === n) return out;
        out.push(`${stem}_${w}${suffix}`);
      }
    }
  }
  if (out.length !== n) throw new Error(`sample spec: cannot make ${n} column names from ${stems.length} stems`);
  return out;
}

const TMP_COLUMNS = [
  "minute_of_hour",
  "hour_of_day",
  "day_of_week",
  "day_of_month",
  "month",
  "quarter",
  "week_of_year",
  "is_weekend",
  "is_month_end",
  "is_quarter_end",
  "session_asia",
  "session_london",
  "session_ny",
  "overlap_london_ny",
  "overlap_asia_london",
  "minutes_to_ny_close",
  "minutes_since_london_open",
  "is_holiday_us",
  "is_holiday_uk",
  "is_holiday_jp",
  "days_to_nfp",
  "days_to_fomc",
  "days_to_ecb",
];

// ---- tables ------------------------------------------------------------------------------

interface Draft {
  dataset: "features" | "targets";
  name: string;
  family: string;
  columns: string[];
  allNull?: readonly string[];
  hasIntervalTime: boolean;
  hasPairColumn: boolean;
  forPair: string | null;
}

function currencies(pair: string): [string, string] {
  return [pair.slice(0, 3), pair.slice(3, 6)];
}

function sharesCurrency(a: string, b: string): boolean {
  const [a1, a2] = currencies(a);
  const [b1, b2] = currencies(b);
  return a1 === b1 || a1 === b2 || a2 === b1 || a2 === b2;
}

/** The 12 pairs whose cov tables go with `pair`: those sharing a currency, filled from the rest. */
export function covPartners(pair: string): string[] {
  const others = PAIRS.filter((p) => p !== pair);
  const sharing = others.filter((p) => sharesCurrency(p, pair));
  const rest = others.filter((p) => !sharesCurrency(p, pair));
  return [...sharing, ...rest].slice(0, COV_PARTNERS);
}

/** Two pairs sharing no currency with `pair` (their tables are decoys for it). */
export function decoyPairs(pair: string): [string, string] {
  const candidates = PAIRS.filter((p) => p !== pair && !sharesCurrency(p, pair));
  const first = candidates[0];
  const last = candidates[candidates.length - 1];
  if (first === undefined || last === undefined || first === last) throw new Error(`sample spec: no two decoy pairs for ${pair}`);
  return [first, last];
}

/** The tables whose names contain the pair (256 for a real pair). */
function pairDrafts(pair: string, forPair: string): Draft[] {
  const d: Draft[] = [];
  const add = (name: string, family: string, columns: string[], hasPairColumn: boolean, allNull?: readonly string[]) =>
    d.push({ dataset: "features", name, family, columns, hasIntervalTime: true, hasPairColumn, forPair, ...(allNull ? { allNull } : {}) });

  for (const f of TRIPLE_FAMILIES) {
    const columns = gridColumns(
      f.width,
      f.stems.map((s) => `${f.family}_${s}`),
      f.windows ?? WINDOWS,
      f.suffixes ?? SUFFIXES,
    );
    add(`${f.family}_${pair}`, f.family, columns, true);
    add(`${f.family}_bqx_${pair}`, f.family, columns, true);
    add(`${f.family}_idx_${pair}`, f.family, columns, true);
  }

  add(`base_${pair}`, "base", ["open", "high", "low", "close", "volume", "spread", "tick_count", "open_idx", "high_idx", "low_idx", "close_idx"], true);
  add(`base_bqx_${pair}`, "base", [...WINDOWS.map((w) => `bqx_${w}`), "bqx_ema_15"], true);
  add(`cyc_${pair}`, "cyc", ["hour_sin", "hour_cos", "dow_sin", "dow_cos"], false);
  add(`ext_${pair}`, "ext", [...gridColumns(14, ["dist_high", "dist_low"]), "pct_rank_45", "pct_rank_1440"], false);
  add(`tmp_${pair}`, "tmp", [...TMP_COLUMNS], false);

  for (const w of [45, 90, 180, 360]) {
    add(
      `lag_${pair}_${w}`,
      "lag",
      [1, 2, 3, 4, 5].flatMap((k) => [`lag_close_${k}`, `lag_ret_${k}`]),
      true,
    );
  }
  for (const w of [45, 90, 180, 360]) {
    add(
      `lag_bqx_${pair}_w${w}`,
      "lag",
      Array.from({ length: 11 }, (_, k) => `lag_bqx_${k + 1}`),
      true,
    );
  }

  const regimeStems = ["regime_state", "regime_prob", "regime_duration"];
  add(`regime_${pair}`, "regime", gridColumns(13, regimeStems), true);
  add(`regime_bqx_${pair}`, "regime", gridColumns(15, regimeStems), true);
  add(`regime_idx_${pair}`, "regime", gridColumns(17, regimeStems), true);
  add(`regime_vol_${pair}`, "regime", gridColumns(19, regimeStems), true);

  for (const variant of CORR_VARIANTS) {
    const etf = variant.startsWith("etf");
    const columns = [...WINDOWS.map((w) => `corr_${w}`), ...(etf ? ["corr_ewm_60"] : [])];
    for (const asset of CORR_ASSETS) {
      add(`corr_${variant}_${pair}_${asset}`, "corr", columns, false, variant === "etf_idx" ? CORR_ETF_IDX_NULL_COLUMNS : undefined);
    }
  }

  for (const [type, width] of COV_TYPES) {
    const columns = gridColumns(width, ["cov", "beta", "spread_z"]);
    for (const other of covPartners(pair)) add(`cov_${type}_${pair}_${other}`, "cov", columns, false);
  }
  return d;
}

/** The shared families: the same tables for every pair. */
function sharedDrafts(): Draft[] {
  const d: Draft[] = [];
  const add = (name: string, family: string, columns: string[], hasIntervalTime = true) =>
    d.push({ dataset: "features", name, family, columns, hasIntervalTime, hasPairColumn: false, forPair: null });

  // tri: the reg tables are wider; their width is whatever makes the 16,988 total exact.
  const triTables = TRI_FAMILIES.flatMap(([fam, n]) =>
    TRIANGLES.slice(0, n).flatMap((tri) => ["bqx", "idx"].map((v) => ({ fam, name: `tri_${fam}_${v}_${tri}` }))),
  );
  for (const t of triTables) {
    if (t.fam !== "reg") add(t.name, "tri", gridColumns(TRI_WIDTH, ["arb_resid", "arb_z"]));
  }
  const triReg = triTables.filter((t) => t.fam === "reg");
  for (const [name, width] of MKT_TABLES) add(`mkt_${name}`, "mkt", gridColumns(width, ["level", "chg", "z"]));
  for (const [name, columns] of MKT_SUMMARIES) add(`mkt_${name}`, "mkt", columns, false);

  const varTables = VAR_FAMILIES.flatMap(([fam, width]) => ["bqx", "idx"].flatMap((v) => CURRENCIES.map((ccy) => ({ name: `var_${fam}_${v}_${ccy}`, width }))));
  for (const t of varTables.slice(0, VAR_TABLES)) add(t.name, "var", gridColumns(t.width, ["disp", "mean", "std"]));

  for (const ccy of CURRENCIES) {
    for (const [fam, width] of CSI_FAMILIES) {
      for (const v of ["bqx", "idx"]) {
        add(`csi_${fam}_${v}_${ccy}`, "csi", gridColumns(width, ["strength", "strength_z", "rank", "breadth", "mom", "trend"], WINDOWS, ["", "_d1", "_ema"]));
      }
    }
  }

  // Everything but tri_reg is fixed; solve for the tri_reg width.
  const nonRegColumns = d.filter((t) => t.hasIntervalTime).reduce((n, t) => n + t.columns.length, 0);
  const pairColumns = pairDrafts("eurusd", "eurusd").reduce((n, t) => n + t.columns.length, 0);
  const left = SAMPLE_FEATURE_COLUMNS - pairColumns - nonRegColumns;
  if (left % triReg.length !== 0 || left / triReg.length <= TRI_WIDTH) {
    throw new Error(`sample spec: ${left} columns left cannot be spread over ${triReg.length} tri_reg tables`);
  }
  const regColumns = gridColumns(left / triReg.length, ["reg_slope", "reg_r2", "reg_resid", "reg_resid_z", "reg_curv", "reg_tstat", "reg_forecast"], W_WINDOWS);
  for (const t of triReg) add(t.name, "tri", regColumns);
  return d.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

function targetDraft(pair: string): Draft {
  return {
    dataset: "targets",
    name: targetTableName(pair),
    family: "targets",
    columns: [...TARGET_COLUMNS],
    hasIntervalTime: true,
    hasPairColumn: true,
    forPair: pair,
  };
}

/** A few tables of another pair Q (never containing `pair` in their name, never shared-family). */
function decoyDrafts(pair: string): Draft[] {
  const out: Draft[] = [];
  for (const q of decoyPairs(pair)) {
    const all = pairDrafts(q, q);
    const partner = covPartners(q).find((p) => p !== pair) ?? "";
    for (const name of [`agg_${q}`, `mom_bqx_${q}`, `lag_${q}_45`, `corr_etf_idx_${q}_spy`, `cov_agg_${q}_${partner}`]) {
      const found = all.find((t) => t.name === name);
      if (found) out.push(found);
    }
    out.push(targetDraft(q));
  }
  return out;
}

/** Which null-rate group a family belongs to. */
function nullGroup(family: string): string {
  return family in FAMILY_NULL_RATES ? family : "pair";
}

/** Per-column null rates around the family mean, normalised so that each family's mean is exact. */
function withNullRates(drafts: Draft[], pair: string): SampleTable[] {
  const groups = new Map<string, { fixed: number; free: number; weights: number }>();
  const weight = (t: Draft, c: string) => 0.5 + unit(`${t.name}.${c}#null`);
  const isFeature = (t: Draft) => t.dataset === "features" && t.hasIntervalTime;
  // The family means hold over the pair's own 667 tables; decoys reuse the same scale.
  for (const t of drafts) {
    if (!isFeature(t) || (t.forPair !== null && t.forPair !== pair)) continue;
    const g = groups.get(nullGroup(t.family)) ?? { fixed: 0, free: 0, weights: 0 };
    for (const c of t.columns) {
      if (t.allNull?.includes(c)) g.fixed += 1;
      else {
        g.free += 1;
        g.weights += weight(t, c);
      }
    }
    groups.set(nullGroup(t.family), g);
  }
  return drafts.map((t) => {
    const g = groups.get(nullGroup(t.family));
    const mean = FAMILY_NULL_RATES[nullGroup(t.family)] ?? 0;
    // Scale so that (fixed + sum of free rates) / (fixed + free) is the family mean.
    const scale = g && g.weights > 0 ? (mean * (g.fixed + g.free) - g.fixed) / g.weights : mean;
    const columns = t.columns.map((name) => ({
      name,
      nullRate: t.allNull?.includes(name) ? 1 : isFeature(t) ? Math.min(0.99, Math.max(0, weight(t, name) * scale)) : 0,
    }));
    const names = new Set(columns.map((c) => c.name));
    if (names.size !== columns.length) throw new Error(`sample spec: duplicate column names in ${t.name}`);
    return {
      dataset: t.dataset,
      name: t.name,
      family: t.family,
      columns,
      hasIntervalTime: t.hasIntervalTime,
      hasPairColumn: t.hasPairColumn,
      forPair: t.forPair,
    };
  });
}

const cache = new Map<string, SampleTable[]>();

/**
 * Every table of the sample warehouse for `pair`: its 256 pair tables, the 413 shared ones
 * (tri/mkt/var/csi, two of them mkt summaries without interval_time), the target table, and
 * decoys of two other pairs. Deterministic: the same pair always gives the same answer.
 * Returns a fresh copy each call.
 */
export function sampleTables(pair: string): SampleTable[] {
  if (!PAIRS.includes(pair)) throw new Error(`sample spec: unknown pair ${JSON.stringify(pair)} (expected one of ${PAIRS.join(", ")})`);
  let tables = cache.get(pair);
  if (!tables) {
    const drafts = [...pairDrafts(pair, pair), ...sharedDrafts(), targetDraft(pair), ...decoyDrafts(pair)];
    tables = withNullRates(drafts, pair);
    cache.set(pair, tables);
  }
  return tables.map((t) => ({ ...t, columns: t.columns.map((c) => ({ ...c })) }));
}

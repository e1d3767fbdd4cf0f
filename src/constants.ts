// Facts about the production data model (../shared/REFERENCE.md) that the code relies on.

export const KEY_COLUMN = "interval_time";
/** Columns that exist in feature tables but are never features. */
export const NON_FEATURE_COLUMNS: readonly string[] = [KEY_COLUMN, "pair"];

export const DEFAULT_FEATURES_DATASET = "bqx_ml_v3_features_v2";
export const DEFAULT_TARGETS_DATASET = "bqx_ml_v3_analytics_v2";

export const TARGET_WINDOWS: readonly number[] = [45, 90, 180, 360, 720, 1440, 2880];
export const TARGET_HORIZONS: readonly number[] = [15, 30, 45, 60, 75, 90, 105];
/** All 49 target columns, window-major. */
export const TARGET_COLUMNS: readonly string[] = TARGET_WINDOWS.flatMap((w) => TARGET_HORIZONS.map((h) => `target_bqx${w}_h${h}`));
/** The 7 horizons validation requires by name. */
export const REQUIRED_TARGET_HORIZONS: readonly string[] = TARGET_HORIZONS.map((h) => `target_bqx45_h${h}`);
/** The target table defines the training rows: rows where this column is not null. */
export const TARGET_ROW_FILTER_COLUMN = "target_bqx45_h15";

/** Families picked up for every pair, whatever their names contain. */
export const SHARED_FAMILIES: readonly string[] = ["tri", "mkt", "var", "csi"];

export const PAIRS: readonly string[] = [
  "eurusd",
  "gbpusd",
  "usdjpy",
  "usdchf",
  "audusd",
  "usdcad",
  "nzdusd",
  "eurgbp",
  "eurjpy",
  "eurchf",
  "euraud",
  "eurcad",
  "eurnzd",
  "gbpjpy",
  "gbpchf",
  "gbpaud",
  "gbpcad",
  "gbpnzd",
  "audjpy",
  "audchf",
  "audcad",
  "audnzd",
  "nzdjpy",
  "nzdchf",
  "nzdcad",
  "cadjpy",
  "cadchf",
  "chfjpy",
];

export function targetTableName(pair: string): string {
  return `targets_${pair}`;
}

#!/usr/bin/env bash
# Checks one pair's training file where it is stored, without downloading it: the object exists,
# its size and metadata are plausible, then the project's validation (scripts/validate-object.ts)
# reads only its footer and manifest (ranged reads) and applies the job's own rules.
# Exit 0 only when the file is there and valid.
set -euo pipefail

USAGE="usage: scripts/validate_gcs_training_file.sh PAIR"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

[[ $# -eq 1 ]] || usage_error "expected one pair (got $#)"
[[ "$1" != -h && "$1" != --help ]] || { echo "${USAGE}"; exit 0; }
pair="$1"
is_pair "${pair}" || usage_error "unknown pair '${pair}': expected one of: ${ALL_PAIRS}"
command -v gsutil >/dev/null || die "gsutil is not on PATH: install the Google Cloud CLI"
uri="${OUTPUT_URI%/}/training_${pair}.parquet"

if ! gsutil -q stat "${uri}"; then
  die "${uri} does not exist: the execution for ${pair} did not upload it (see its logs), or OUTPUT_URI is not the job's"
fi
stat="$(gsutil stat "${uri}")"
size="$(awk -F': *' '$1 ~ /^ *Content-Length$/ { print $2 }' <<<"${stat}")"
metadata() {
  awk -v key="$1" '
    /^    Metadata:/ { inside = 1; next }
    inside && /^        / { split($0, kv, ": *"); sub(/^ +/, "", kv[1]); if (kv[1] == key) { print kv[2] } next }
    inside { inside = 0 }
  ' <<<"${stat}"
}
meta_pair="$(metadata pair)"
meta_rows="$(metadata rows)"
meta_columns="$(metadata columns)"
echo "${uri}: ${size:-?} bytes, metadata pair=${meta_pair:-none} rows=${meta_rows:-none} columns=${meta_columns:-none}"

[[ "${size}" =~ ^[0-9]+$ ]] || die "${uri}: cannot read its size from gsutil stat"
[[ "${size}" -ge "${MIN_TRAINING_BYTES}" ]] ||
  die "${uri} is ${size} bytes, below MIN_TRAINING_BYTES=${MIN_TRAINING_BYTES} (scripts/settings.env): not a complete training file"
[[ "${meta_pair}" == "${pair}" ]] || die "${uri} carries metadata pair=${meta_pair:-none}, expected ${pair}: it was not written by the job for ${pair}"
[[ "${meta_rows}" =~ ^[0-9]+$ && "${meta_columns}" =~ ^[0-9]+$ ]] || die "${uri} lacks its rows/columns metadata: it was not written by this job"

node="$(project_node)"
"${node}" "${PROJECT_ROOT}/scripts/validate-object.ts" "${uri}" --min-rows "${MIN_ROWS}" --min-columns "${MIN_COLUMNS}" ||
  die "${uri} failed validation (above); rebuild it: scripts/execute_production_26pairs.sh --pairs ${pair}"

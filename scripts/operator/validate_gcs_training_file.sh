#!/usr/bin/env bash
# Checks one pair's training file where it is stored, without downloading it: the object exists,
# its size and metadata are plausible, then the project's validation (scripts/operator/validate-object.ts)
# reads only its footer and manifest (ranged reads) and applies the job's own rules. With
# --execution NAME the file must also have been built by that Cloud Run execution.
# Exit: 0 there and valid; 1 missing, invalid or from another run (rebuild it); 2 bad command
# line; 3 not checked: the caller's credentials or access (fix them and validate again).
set -euo pipefail

USAGE="usage: scripts/operator/validate_gcs_training_file.sh PAIR [--execution NAME]
  --execution NAME   the Cloud Run execution that must have built the file"

# shellcheck source=scripts/operator/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pair=""
expected_execution=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --execution) [[ $# -ge 2 && -n "$2" ]] || usage_error "--execution needs an execution name"; expected_execution="$2"; shift 2 ;;
    -h|--help) echo "${USAGE}"; exit 0 ;;
    -*) usage_error "unknown argument '$1'" ;;
    *) [[ -z "${pair}" ]] || usage_error "expected one pair (got '${pair}' and '$1')"; pair="$1"; shift ;;
  esac
done
[[ -n "${pair}" ]] || usage_error "expected one pair"
is_pair "${pair}" || usage_error "unknown pair '${pair}': expected one of: ${ALL_PAIRS}"
command -v gsutil >/dev/null || die "gsutil is not on PATH: install the Google Cloud CLI"
uri="${OUTPUT_URI%/}/training_${pair}.parquet"
bucket="${OUTPUT_URI#gs://}"
bucket="${bucket%%/*}"

# Nothing is known to be wrong with the file: say what stopped the check, exit 3.
not_checked() {
  echo "ERROR: ${uri} not checked: $*" >&2
  exit 3
}

# One stat, its stderr kept: gsutil exits 1 both for a missing object and for one the caller
# may not read, and only its message tells them apart (gslib/commands/stat.py).
stat_error="$(mktemp)"
trap 'rm -f "${stat_error}"' EXIT
if ! stat="$(gsutil stat "${uri}" 2>"${stat_error}")"; then
  case "$(cat "${stat_error}")" in
    *"You aren't authorized to read"*)
      not_checked "the account gsutil uses may not read it (403). Grant it roles/storage.objectViewer on gs://${bucket} (gcloud storage buckets add-iam-policy-binding gs://${bucket} --member=user:<you> --role=roles/storage.objectViewer), or log in as one that has it (gcloud auth login)" ;;
    *"ServiceException: 401"*)
      not_checked "gsutil has no valid credentials (401): run gcloud auth login" ;;
    *"No URLs matched"*)
      die "${uri} does not exist: the execution for ${pair} did not upload it (see its logs), or OUTPUT_URI is not the job's. Rebuild it: scripts/operator/execute_production_26pairs.sh --pairs ${pair}" ;;
    *)
      not_checked "gsutil stat failed: $(cat "${stat_error}")" ;;
  esac
fi
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
meta_execution="$(metadata execution)"
echo "${uri}: ${size:-?} bytes, metadata pair=${meta_pair:-none} rows=${meta_rows:-none} columns=${meta_columns:-none} execution=${meta_execution:-none}"

[[ "${size}" =~ ^[0-9]+$ ]] || die "${uri}: cannot read its size from gsutil stat"
[[ "${size}" -ge "${MIN_TRAINING_BYTES}" ]] ||
  die "${uri} is ${size} bytes, below MIN_TRAINING_BYTES=${MIN_TRAINING_BYTES} (scripts/operator/settings.env): not a complete training file"
[[ "${meta_pair}" == "${pair}" ]] || die "${uri} carries metadata pair=${meta_pair:-none}, expected ${pair}: it was not written by the job for ${pair}"
[[ "${meta_rows}" =~ ^[0-9]+$ && "${meta_columns}" =~ ^[0-9]+$ ]] || die "${uri} lacks its rows/columns metadata: it was not written by this job"

node="$(project_node)"
code=0
"${node}" "${SCRIPTS_DIR}/validate-object.ts" "${uri}" --min-rows "${MIN_ROWS}" --min-columns "${MIN_COLUMNS}" \
  ${expected_execution:+--execution "${expected_execution}"} || code=$?
case "${code}" in
  0) ;;
  3) not_checked "validate-object.ts could not read it (above); nothing is known to be wrong with the file" ;;
  *) die "${uri} failed validation (above); rebuild it: scripts/operator/execute_production_26pairs.sh --pairs ${pair}" ;;
esac

#!/usr/bin/env bash
# Builds the training files one pair at a time: for each pair, one execution of the job with
# TARGET_PAIR set for that execution only, waited for, then the file validated where it is
# stored. Stops at the first failure and prints how to resume from it; a table at the end
# says what happened to every pair. (The original plan named 26 pairs; the default is all 28.)
set -euo pipefail

USAGE="usage: scripts/execute_production_26pairs.sh [--pairs \"eurusd gbpusd ...\"] [--from PAIR]
  --pairs LIST   pairs to build, in order (default: all 28 in scripts/settings.env ALL_PAIRS)
  --from PAIR    start at PAIR in the list (resume after a failure)"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pairs_arg=""
from=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) [[ $# -ge 2 ]] || usage_error "--pairs needs a value"; pairs_arg="$2"; shift 2 ;;
    --from) [[ $# -ge 2 ]] || usage_error "--from needs a pair"; from="$2"; shift 2 ;;
    -h|--help) echo "${USAGE}"; exit 0 ;;
    *) usage_error "unknown argument '$1' (the pair goes in --pairs, never as an argument to the job)" ;;
  esac
done

list="$(checked_pairs "${pairs_arg:-${ALL_PAIRS}}")"
read -r -a pairs <<<"${list}"
if [[ -n "${from}" ]]; then
  start=-1
  for i in "${!pairs[@]}"; do [[ "${pairs[i]}" == "${from}" ]] && start=$i; done
  [[ ${start} -ge 0 ]] || usage_error "--from ${from}: not in the list (${pairs[*]})"
  pairs=("${pairs[@]:start}")
fi
command -v gcloud >/dev/null || die "gcloud is not on PATH: install the Google Cloud CLI"

declare -A result=() execution=() took=()
current=""
summary() {
  echo
  echo "== summary: job ${JOB_NAME}, output ${OUTPUT_URI}"
  printf '%-8s  %-18s  %-8s  %s\n' pair result time execution
  local pair
  for pair in "${pairs[@]}"; do
    printf '%-8s  %-18s  %-8s  %s\n' "${pair}" "${result[${pair}]:-not run}" "${took[${pair}]:--}" "${execution[${pair}]:--}"
  done
}

resume_hint() {
  local hint="scripts/execute_production_26pairs.sh --from $1"
  [[ -z "${pairs_arg}" ]] || hint+=" --pairs \"${pairs_arg}\""
  echo "resume with: ${hint}"
}

interrupted() {
  summary
  if [[ -n "${current}" ]]; then
    echo "interrupted during ${current}: its execution may still be running (gcloud run jobs executions list --job ${JOB_NAME} --region ${REGION})"
    resume_hint "${current}"
  fi
  exit 130
}
trap interrupted INT TERM

echo "== ${#pairs[@]} pair(s), one execution each: ${pairs[*]}"
for current in "${pairs[@]}"; do
  echo
  echo "== ${current}: gcloud run jobs execute ${JOB_NAME} --update-env-vars TARGET_PAIR=${current} --wait"
  started=$(date +%s)
  if name="$(gcloud run jobs execute "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" \
      --update-env-vars "TARGET_PAIR=${current}" --wait --format 'value(metadata.name)')"; then
    execution[${current}]="${name}"
    if "${SCRIPTS_DIR}/validate_gcs_training_file.sh" "${current}"; then
      result[${current}]="ok"
    else
      result[${current}]="validation failed"
    fi
  else
    execution[${current}]="${name:-}"
    result[${current}]="execution failed"
  fi
  took[${current}]="$(minutes $(($(date +%s) - started)))"
  if [[ "${result[${current}]}" != ok ]]; then
    summary
    echo
    echo "ERROR: ${current}: ${result[${current}]}; stopped before the remaining pairs." >&2
    echo "logs: gcloud logging read 'resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${JOB_NAME}\" AND jsonPayload.pair=\"${current}\" AND severity>=WARNING' --project ${GCP_PROJECT} --freshness 1d" >&2
    resume_hint "${current}" >&2
    exit 1
  fi
done
summary
echo
echo "all ${#pairs[@]} pair(s) built and validated in ${OUTPUT_URI}"

#!/usr/bin/env bash
# Builds the training files one pair at a time: for each pair, one execution of the job with
# TARGET_PAIR set for that execution only, started with --async and followed until it ends,
# then the file validated where it is stored (it must have been built by that execution).
# Stops at the first failure and prints how to resume from it; a table at the end says what
# happened to every pair. (The original plan named 26 pairs; the default is all 28.)
# Exit: 0 all built and valid; 1 a pair failed (rebuild from it); 2 bad command line; 3 a file
# could not be checked (credentials or access: nothing to rebuild); 4 an execution could no
# longer be followed (it runs on); 130 interrupted (a running execution runs on).
set -euo pipefail

USAGE="usage: scripts/operator/execute_production_26pairs.sh [--pairs \"eurusd gbpusd ...\"] [--from PAIR]
  --pairs LIST   pairs to build, in order (default: all 28 in scripts/operator/settings.env ALL_PAIRS)
  --from PAIR    start at PAIR in the list (resume after a failure)"

# shellcheck source=scripts/operator/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pairs_arg=""
pairs_given=false
from=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) [[ $# -ge 2 ]] || usage_error "--pairs needs a value"; pairs_arg="$2"; pairs_given=true; shift 2 ;;
    --from) [[ $# -ge 2 ]] || usage_error "--from needs a pair"; from="$2"; shift 2 ;;
    -h|--help) echo "${USAGE}"; exit 0 ;;
    *) usage_error "unknown argument '$1' (the pair goes in --pairs, never as an argument to the job)" ;;
  esac
done

# An empty --pairs is refused (checked_pairs), never taken as "all 28".
if "${pairs_given}"; then list="$(checked_pairs "${pairs_arg}")"; else list="$(checked_pairs "${ALL_PAIRS}")"; fi
read -r -a pairs <<<"${list}"
if [[ -n "${from}" ]]; then
  start=-1
  for i in "${!pairs[@]}"; do [[ "${pairs[i]}" == "${from}" ]] && start=$i; done
  [[ ${start} -ge 0 ]] || usage_error "--from ${from}: not in the list (${pairs[*]})"
  pairs=("${pairs[@]:start}")
fi
require_gcloud
require_validation_credentials

# Each execution here has one task; Cloud Run refuses it while the job's parallelism is above
# that (an execution cannot override parallelism), so a job left at more by the parallel
# script is set back to one task, one at a time.
job_shape="$(gcloud run jobs describe "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" \
  --format 'value(spec.template.spec.parallelism,spec.template.spec.taskCount)')" ||
  die "job ${JOB_NAME} not found in ${REGION} (above): deploy it first (scripts/operator/deploy.sh)"
job_parallelism="${job_shape%%$'\t'*}"
if [[ "${job_parallelism:-0}" -gt 1 ]]; then
  echo "== job ${JOB_NAME} runs up to ${job_parallelism} tasks at once; these executions have 1 task: setting it to 1 task, 1 at a time"
  gcloud run jobs update "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" --tasks 1 --parallelism 1
fi

declare -A result=() execution=() took=()
current=""
current_execution=""
phase=""
summary() {
  echo
  echo "== summary: job ${JOB_NAME}, output ${OUTPUT_URI}"
  printf '%-8s  %-18s  %-8s  %s\n' pair result time execution
  local pair
  for pair in "${pairs[@]}"; do
    printf '%-8s  %-18s  %-8s  %s\n' "${pair}" "${result[${pair}]:-not run}" "${took[${pair}]:--}" "${execution[${pair}]:--}"
  done
}

resume_command() {
  local command="scripts/operator/execute_production_26pairs.sh --from $1"
  ! "${pairs_given}" || command+=" --pairs \"${pairs_arg}\""
  echo "${command}"
}

# The pair after the current one, if any.
next_pair() {
  local i
  for i in "${!pairs[@]}"; do
    if [[ "${pairs[i]}" == "${current}" && $((i + 1)) -lt ${#pairs[@]} ]]; then echo "${pairs[i + 1]}"; fi
  done
}

# What to do once an execution this script no longer follows has ended: validate its pair
# (which says how to rebuild it if needed), then go on from the next. Never a command that
# would start a second execution for the pair while the first may still run.
after_it_ends() {
  local next
  next="$(next_pair)"
  echo "once it has ended (describe shows a completionTime), validate ${current}: scripts/operator/validate_gcs_training_file.sh ${current} --execution ${current_execution}" >&2
  if [[ -n "${next}" ]]; then echo "then go on with: $(resume_command "${next}")" >&2; fi
}

interrupted() {
  trap - INT TERM
  summary
  echo >&2
  case "${phase}" in
    starting)
      echo "interrupted while starting the execution for ${current}: it may have started. Look before starting it again:" >&2
      echo "  gcloud run jobs executions list --job ${JOB_NAME} --region ${REGION} --project ${GCP_PROJECT}" >&2
      echo "  if no execution for ${current} is running: $(resume_command "${current}")" >&2
      ;;
    waiting)
      echo "interrupted while waiting for ${current}." >&2
      execution_keeps_running "${current_execution}"
      after_it_ends
      ;;
    validating)
      echo "interrupted while validating ${current} (its execution ${current_execution} has ended)." >&2
      after_it_ends
      ;;
    *)
      if [[ -n "${current}" && -n "$(next_pair)" ]]; then echo "resume with: $(resume_command "$(next_pair)")" >&2; fi
      ;;
  esac
  exit 130
}
trap interrupted INT TERM

echo "== ${#pairs[@]} pair(s), one execution each: ${pairs[*]}"
for current in "${pairs[@]}"; do
  echo
  echo "== ${current}: gcloud run jobs execute ${JOB_NAME} --tasks 1 --update-env-vars TARGET_PAIR=${current} --async"
  started=$(date +%s)
  phase=starting
  current_execution=""
  current_execution="$(start_execution --tasks 1 --update-env-vars "TARGET_PAIR=${current}")" || true
  if [[ -z "${current_execution}" ]]; then
    result[${current}]="not started"
    summary
    echo "ERROR: ${current}: the execution did not start (gcloud's error above); nothing was built for it." >&2
    echo "check that none is running (gcloud run jobs executions list --job ${JOB_NAME} --region ${REGION} --project ${GCP_PROJECT}), then: $(resume_command "${current}")" >&2
    exit 1
  fi
  execution[${current}]="${current_execution}"
  phase=waiting
  echo "   execution ${current_execution}; waiting for it to end (a look every ${POLL_SECONDS}s; Ctrl-C stops this script, not the execution)"
  outcome=0
  wait_for_execution "${current_execution}" 1 || outcome=$?
  took[${current}]="$(minutes $(($(date +%s) - started)))"
  if [[ ${outcome} -eq 4 ]]; then
    result[${current}]="not followed"
    summary
    echo "ERROR: ${current}: could not describe execution ${current_execution} ${DESCRIBE_ATTEMPTS} times in a row (gcloud's errors above)." >&2
    execution_keeps_running "${current_execution}"
    after_it_ends
    exit 4
  fi
  phase=validating
  code=0
  if [[ ${outcome} -eq 0 ]]; then
    "${SCRIPTS_DIR}/validate_gcs_training_file.sh" "${current}" --execution "${current_execution}" || code=$?
    case "${code}" in
      0) result[${current}]="ok" ;;
      3) result[${current}]="not checked" ;;
      *) result[${current}]="validation failed" ;;
    esac
  else
    result[${current}]="execution failed"
    echo "   execution ${current_execution} failed: ${execution_result}"
  fi
  phase=""
  if [[ "${result[${current}]}" == "not checked" ]]; then
    summary
    echo >&2
    echo "ERROR: ${current}: its file could not be checked (above: credentials or access, not the file); stopped before the remaining pairs." >&2
    after_it_ends
    exit 3
  fi
  if [[ "${result[${current}]}" != ok ]]; then
    summary
    echo >&2
    echo "ERROR: ${current}: ${result[${current}]} (execution ${current_execution}); stopped before the remaining pairs." >&2
    echo "details: gcloud run jobs executions describe ${current_execution} --region ${REGION} --project ${GCP_PROJECT}" >&2
    echo "logs: gcloud logging read 'resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${JOB_NAME}\" AND jsonPayload.pair=\"${current}\" AND severity>=WARNING' --project ${GCP_PROJECT} --freshness 1d" >&2
    echo "resume with: $(resume_command "${current}")" >&2
    exit 1
  fi
done
summary
echo
echo "all ${#pairs[@]} pair(s) built and validated in ${OUTPUT_URI}"

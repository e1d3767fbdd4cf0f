#!/usr/bin/env bash
# Builds many pairs in ONE execution: --tasks N tasks, at most P running at once, each task
# taking its pairs from PAIRS by its CLOUD_RUN_TASK_INDEX (task i builds the pairs at positions
# i, i+N, ... of the list; with N = the number of pairs, one pair each, so a retry redoes one
# pair). The execution is started with --async and followed until it ends; then every pair's
# file is validated (it must have been built by this execution) and a table printed.
# Exit: 0 all built and valid; 1 pairs to rebuild (named); 2 bad command line; 3 files that
# could not be checked (credentials or access); 4 the execution could no longer be followed
# (it runs on); 130 interrupted (the execution runs on).
set -euo pipefail

USAGE="usage: scripts/operator/execute_all_pairs_parallel.sh [--pairs \"eurusd gbpusd ...\"] [--tasks N] [--parallelism P]
  --pairs LIST       pairs to build (default: all 28 in scripts/operator/settings.env ALL_PAIRS)
  --tasks N          tasks in the execution (default: one per pair; at most one per pair)
  --parallelism P    tasks running at once (default: PARALLELISM in scripts/operator/settings.env; at most N)"

# shellcheck source=scripts/operator/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pairs_arg=""
pairs_given=false
tasks=""
parallelism="${PARALLELISM}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) [[ $# -ge 2 ]] || usage_error "--pairs needs a value"; pairs_arg="$2"; pairs_given=true; shift 2 ;;
    --tasks) [[ $# -ge 2 ]] || usage_error "--tasks needs a value"; tasks="$2"; shift 2 ;;
    --parallelism) [[ $# -ge 2 ]] || usage_error "--parallelism needs a value"; parallelism="$2"; shift 2 ;;
    -h|--help) echo "${USAGE}"; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

# An empty --pairs is refused (checked_pairs), never taken as "all 28".
if "${pairs_given}"; then list="$(checked_pairs "${pairs_arg}")"; else list="$(checked_pairs "${ALL_PAIRS}")"; fi
read -r -a pairs <<<"${list}"
tasks="${tasks:-${#pairs[@]}}"
[[ "${tasks}" =~ ^[1-9][0-9]*$ ]] || usage_error "--tasks ${tasks}: expected a whole number from 1"
[[ "${parallelism}" =~ ^[1-9][0-9]*$ ]] || usage_error "--parallelism ${parallelism}: expected a whole number from 1"
[[ "${tasks}" -le "${#pairs[@]}" ]] || usage_error "--tasks ${tasks}: more tasks than the ${#pairs[@]} pairs listed; the extra tasks would build nothing (the job refuses that)"
require_gcloud
require_validation_credentials

# "all" when it is all 28 in the usual order; otherwise the names, separated by spaces (a comma
# would split gcloud's --update-env-vars list).
if [[ "${list}" == "$(checked_pairs "${ALL_PAIRS}")" ]]; then pairs_env="all"; else pairs_env="${list}"; fi
per_task=$(((${#pairs[@]} + tasks - 1) / tasks))
if [[ ${per_task} -gt 1 ]]; then
  echo "note: ${tasks} tasks for ${#pairs[@]} pairs: a task builds up to ${per_task} pairs one after another, all within TASK_TIMEOUT=${TASK_TIMEOUT}"
fi
# Parallelism is the job's, not the execution's (gcloud run jobs execute has no such flag), and
# Cloud Run refuses an execution of fewer tasks than it: set both on the job for this run.
if [[ "${parallelism}" -gt "${tasks}" ]]; then
  echo "note: parallelism ${parallelism} lowered to ${tasks}, the execution's task count (Cloud Run refuses more)"
  parallelism="${tasks}"
fi
echo "== job ${JOB_NAME}: ${tasks} task(s), at most ${parallelism} at once"
gcloud run jobs update "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" --tasks "${tasks}" --parallelism "${parallelism}"

name=""
validate_hint() {
  echo "once it has ended, validate its pairs: for pair in ${list}; do scripts/operator/validate_gcs_training_file.sh \"\${pair}\" --execution ${name}; done" >&2
}
interrupted() {
  trap - INT TERM
  echo >&2
  if [[ -n "${name}" ]]; then
    echo "interrupted." >&2
    execution_keeps_running "${name}"
    validate_hint
  else
    echo "interrupted while starting the execution: it may have started; look before starting another: gcloud run jobs executions list --job ${JOB_NAME} --region ${REGION} --project ${GCP_PROJECT}" >&2
  fi
  exit 130
}
trap interrupted INT TERM

echo "== one execution, ${tasks} tasks, PAIRS=${pairs_env}"
started=$(date +%s)
name="$(start_execution --tasks "${tasks}" --update-env-vars "PAIRS=${pairs_env}")" || true
[[ -n "${name}" ]] ||
  die "the execution did not start (gcloud's error above); nothing was built. Check that none is running (gcloud run jobs executions list --job ${JOB_NAME} --region ${REGION} --project ${GCP_PROJECT}) before starting again"
echo "   execution ${name}; waiting for it to end (a look every ${POLL_SECONDS}s; Ctrl-C stops this script, not the execution)"
outcome=0
wait_for_execution "${name}" "${tasks}" || outcome=$?
took="$(minutes $(($(date +%s) - started)))"
if [[ ${outcome} -eq 4 ]]; then
  echo "ERROR: could not describe execution ${name} ${DESCRIBE_ATTEMPTS} times in a row (gcloud's errors above)." >&2
  execution_keeps_running "${name}"
  validate_hint
  exit 4
fi
trap - INT TERM
if [[ ${outcome} -eq 0 ]]; then status="ok"; else status="failed"; fi
echo "== execution ${name} ${status} after ${took} (${execution_result}); validating every pair (a failed task leaves the others' files)"

declare -A result=()
rebuild=""
unchecked=""
for pair in "${pairs[@]}"; do
  code=0
  "${SCRIPTS_DIR}/validate_gcs_training_file.sh" "${pair}" --execution "${name}" >"${TMPDIR:-/tmp}/validate-${pair}.$$.log" 2>&1 || code=$?
  case "${code}" in
    0) result[${pair}]="ok" ;;
    3) result[${pair}]="not checked (access)"; unchecked+="${unchecked:+ }${pair}" ;;
    *) result[${pair}]="missing, stale or invalid"; rebuild+="${rebuild:+ }${pair}" ;;
  esac
done

echo
echo "== summary: execution ${name} (${status}, ${took}), output ${OUTPUT_URI}"
printf '%-8s  %-5s  %s\n' pair task result
for i in "${!pairs[@]}"; do
  pair="${pairs[i]}"
  printf '%-8s  %-5s  %s\n' "${pair}" "$((i % tasks))" "${result[${pair}]}"
  if [[ "${result[${pair}]}" != ok ]]; then sed 's/^/          /' "${TMPDIR:-/tmp}/validate-${pair}.$$.log"; fi
  rm -f "${TMPDIR:-/tmp}/validate-${pair}.$$.log"
done

logs="logs: gcloud logging read 'resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${JOB_NAME}\" AND labels.\"run.googleapis.com/execution_name\"=\"${name}\" AND severity>=ERROR' --project ${GCP_PROJECT} --freshness 1d"
if [[ -n "${rebuild}" ]]; then
  read -r -a rebuild_pairs <<<"${rebuild}"
  echo >&2
  echo "ERROR: ${#rebuild_pairs[@]} of ${#pairs[@]} pair(s) not built by execution ${name}; rerun them with: scripts/operator/execute_production_26pairs.sh --pairs \"${rebuild}\"" >&2
  echo "${logs}" >&2
  exit 1
fi
if [[ -n "${unchecked}" ]]; then
  echo >&2
  echo "ERROR: could not check ${unchecked} (credentials or access, above; not the files). Fix that, then: for pair in ${unchecked}; do scripts/operator/validate_gcs_training_file.sh \"\${pair}\" --execution ${name}; done" >&2
  exit 3
fi
if [[ "${status}" != ok ]]; then
  echo >&2
  echo "ERROR: execution ${name} failed (${execution_result}), yet every pair's file is valid and was built by it: see its logs before trusting them." >&2
  echo "${logs}" >&2
  exit 1
fi
echo
echo "all ${#pairs[@]} pair(s) built and validated in ${OUTPUT_URI}"

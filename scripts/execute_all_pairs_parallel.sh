#!/usr/bin/env bash
# Builds many pairs in ONE execution: --tasks N tasks, at most P running at once, each task
# taking its pairs from PAIRS by its CLOUD_RUN_TASK_INDEX (task i builds the pairs at positions
# i, i+N, ... of the list; with N = the number of pairs, one pair each, so a retry redoes one
# pair). Then validates every pair's file and prints a table. Exit 0 only when all are valid.
set -euo pipefail

USAGE="usage: scripts/execute_all_pairs_parallel.sh [--pairs \"eurusd gbpusd ...\"] [--tasks N] [--parallelism P]
  --pairs LIST       pairs to build (default: all 28 in scripts/settings.env ALL_PAIRS)
  --tasks N          tasks in the execution (default: one per pair; at most one per pair)
  --parallelism P    tasks running at once (default: PARALLELISM in scripts/settings.env)"

# shellcheck source=scripts/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

pairs_arg=""
tasks=""
parallelism="${PARALLELISM}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --pairs) [[ $# -ge 2 ]] || usage_error "--pairs needs a value"; pairs_arg="$2"; shift 2 ;;
    --tasks) [[ $# -ge 2 ]] || usage_error "--tasks needs a value"; tasks="$2"; shift 2 ;;
    --parallelism) [[ $# -ge 2 ]] || usage_error "--parallelism needs a value"; parallelism="$2"; shift 2 ;;
    -h|--help) echo "${USAGE}"; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done

list="$(checked_pairs "${pairs_arg:-${ALL_PAIRS}}")"
read -r -a pairs <<<"${list}"
tasks="${tasks:-${#pairs[@]}}"
[[ "${tasks}" =~ ^[1-9][0-9]*$ ]] || usage_error "--tasks ${tasks}: expected a whole number from 1"
[[ "${parallelism}" =~ ^[1-9][0-9]*$ ]] || usage_error "--parallelism ${parallelism}: expected a whole number from 1"
[[ "${tasks}" -le "${#pairs[@]}" ]] || usage_error "--tasks ${tasks}: more tasks than the ${#pairs[@]} pairs listed; the extra tasks would build nothing (the job refuses that)"
command -v gcloud >/dev/null || die "gcloud is not on PATH: install the Google Cloud CLI"

# "all" when it is all 28 in the usual order; otherwise the names, separated by spaces (a comma
# would split gcloud's --update-env-vars list).
if [[ "${list}" == "$(checked_pairs "${ALL_PAIRS}")" ]]; then pairs_env="all"; else pairs_env="${list}"; fi
per_task=$(((${#pairs[@]} + tasks - 1) / tasks))
if [[ ${per_task} -gt 1 ]]; then
  echo "note: ${tasks} tasks for ${#pairs[@]} pairs: a task builds up to ${per_task} pairs one after another, all within TASK_TIMEOUT=${TASK_TIMEOUT}"
fi

# Parallelism is a property of the job, not of an execution.
echo "== job ${JOB_NAME}: at most ${parallelism} tasks at once"
gcloud run jobs update "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" --parallelism "${parallelism}"

echo "== one execution, ${tasks} tasks, PAIRS=${pairs_env}"
started=$(date +%s)
status="ok"
name="$(gcloud run jobs execute "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" \
  --tasks "${tasks}" --update-env-vars "PAIRS=${pairs_env}" --wait --format 'value(metadata.name)')" || status="failed"
took="$(minutes $(($(date +%s) - started)))"
echo "== execution ${name:-?} ${status} after ${took}; validating every pair (a failed task leaves the others' files)"

declare -A result=()
failures=0
failed_pairs=""
for pair in "${pairs[@]}"; do
  if "${SCRIPTS_DIR}/validate_gcs_training_file.sh" "${pair}" >"${TMPDIR:-/tmp}/validate-${pair}.$$.log" 2>&1; then
    result[${pair}]="ok"
  else
    result[${pair}]="missing or invalid"
    failures=$((failures + 1))
    failed_pairs+="${failed_pairs:+ }${pair}"
  fi
done

echo
echo "== summary: execution ${name:-?} (${status}, ${took}), output ${OUTPUT_URI}"
printf '%-8s  %-5s  %s\n' pair task result
for i in "${!pairs[@]}"; do
  pair="${pairs[i]}"
  printf '%-8s  %-5s  %s\n' "${pair}" "$((i % tasks))" "${result[${pair}]}"
  if [[ "${result[${pair}]}" != ok ]]; then sed 's/^/          /' "${TMPDIR:-/tmp}/validate-${pair}.$$.log"; fi
  rm -f "${TMPDIR:-/tmp}/validate-${pair}.$$.log"
done

if [[ "${status}" != ok || ${failures} -gt 0 ]]; then
  echo
  echo "ERROR: ${failures} of ${#pairs[@]} pair(s) not built; rerun them with: scripts/execute_production_26pairs.sh --pairs \"${failed_pairs}\"" >&2
  echo "logs: gcloud logging read 'resource.type=\"cloud_run_job\" AND resource.labels.job_name=\"${JOB_NAME}\" AND severity>=ERROR' --project ${GCP_PROJECT} --freshness 1d" >&2
  exit 1
fi
echo
echo "all ${#pairs[@]} pair(s) built and validated in ${OUTPUT_URI}"

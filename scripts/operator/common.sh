# shellcheck shell=bash
# Helpers shared by the operator scripts; sourced, never run. Loads the settings
# (scripts/operator/settings.env, or the file BQX_SETTINGS names) and checks them once.

# First, before any bash 4 construct is parsed or run: stock macOS bash is 3.2, where the
# scripts' associative arrays and empty arrays under `set -u` abort them half-way. This block
# is bash 3.2 syntax. It reads BASH_VERSION (BASH_VERSINFO is read-only, so a test could not
# play an old bash with it).
case "${BASH_VERSION:-}" in
  4.[4-9]* | 4.[1-9][0-9]* | [5-9].* | [1-9][0-9]*.*) ;;
  *)
    echo "ERROR: bash ${BASH_VERSION:-(unknown version)} (${BASH:-bash}) is too old for ${BASH_SOURCE[1]:-these scripts}: they need bash 4.4 or newer." >&2
    echo "On macOS (which ships bash 3.2): brew install bash, then run the script with it: \"\$(brew --prefix)/bin/bash\" ${BASH_SOURCE[1]:-scripts/<script>.sh} ..." >&2
    echo "(or put Homebrew's bin directory first on PATH: the scripts start with #!/usr/bin/env bash)." >&2
    exit 1
    ;;
esac

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(cd "${SCRIPTS_DIR}/../.." && pwd)"
export SCRIPTS_DIR PROJECT_ROOT

# gcloud run jobs execute accepts --tasks and --update-env-vars (execution overrides) from
# gcloud 453.0.0 (2023-10-31; 442.0.0 added them to `gcloud beta` only).
MIN_GCLOUD_VERSION=453.0.0
# Consecutive failed looks at a running execution before a script stops following it.
DESCRIBE_ATTEMPTS=5

die() {
  echo "ERROR: $*" >&2
  exit 1
}

usage_error() {
  echo "ERROR: $*" >&2
  echo "${USAGE:-}" >&2
  exit 2
}

# shellcheck source=scripts/operator/settings.env
source "${BQX_SETTINGS:-${SCRIPTS_DIR}/settings.env}" || die "cannot read the settings file ${BQX_SETTINGS:-${SCRIPTS_DIR}/settings.env}"

for name in GCP_PROJECT REGION JOB_NAME IMAGE SERVICE_ACCOUNT OUTPUT_URI; do
  [[ -n "${!name:-}" ]] || die "${name} is empty: set it in scripts/operator/settings.env (or the file BQX_SETTINGS names)"
done
[[ "${OUTPUT_URI}" == gs://* ]] || die "OUTPUT_URI=${OUTPUT_URI}: expected gs://<bucket>[/<prefix>] for the Cloud Run job (scripts/operator/settings.env; is OUTPUT_URI exported in your shell for a local run?)"
[[ -z "${CHECKPOINT_URI:-}" ]] || die "CHECKPOINT_URI=${CHECKPOINT_URI}: no longer used (the job stages its parts under OUTPUT_URI's _staging/ prefix; compose needs one bucket): remove it from your settings"
[[ "${POLL_SECONDS:-}" =~ ^([1-9][0-9]*|[0-9]*\.[0-9]*[1-9][0-9]*)$ ]] || die "POLL_SECONDS=${POLL_SECONDS:-}: expected a number of seconds above 0 (scripts/operator/settings.env)"

# True when $1 is one of the 28 pairs.
is_pair() {
  local candidate="$1" pair
  for pair in ${ALL_PAIRS}; do
    [[ "${candidate}" == "${pair}" ]] && return 0
  done
  return 1
}

# Checks a space- or comma-separated list of pairs and prints it space-separated.
checked_pairs() {
  local list="${1//,/ }" pair seen=" "
  for pair in ${list}; do
    is_pair "${pair}" || usage_error "unknown pair '${pair}': expected some of: ${ALL_PAIRS}"
    [[ "${seen}" != *" ${pair} "* ]] || usage_error "pair '${pair}' is listed twice"
    seen+="${pair} "
  done
  [[ "${seen}" != " " ]] || usage_error "no pairs given"
  echo "${seen:1:${#seen}-2}"
}

# Node 24 with the project's dependencies: the project's own (npm ci installs it), else PATH's.
project_node() {
  local node="${NODE:-${PROJECT_ROOT}/node_modules/.bin/node}"
  [[ -x "${node}" ]] || node="$(command -v node || true)"
  [[ -n "${node}" ]] || die "no node found: run 'npm ci' in ${PROJECT_ROOT} first"
  [[ "$("${node}" -p 'process.versions.node.split(".")[0]')" -ge 24 ]] || die "${node} is not Node 24: run 'npm ci' in ${PROJECT_ROOT} (it installs Node 24 into node_modules)"
  echo "${node}"
}

# Seconds as "12m05s".
minutes() {
  printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# True when version $1 (like 578.0.0) is $2 or newer.
version_at_least() {
  local -a have want
  local i
  IFS=. read -r -a have <<<"$1"
  IFS=. read -r -a want <<<"$2"
  for i in 0 1 2; do
    [[ "${have[i]:-0}" =~ ^[0-9]+$ ]] || return 1
    if ((${have[i]:-0} != ${want[i]:-0})); then
      ((${have[i]:-0} > ${want[i]:-0}))
      return
    fi
  done
}

# gcloud on PATH, and new enough for what the scripts ask of it.
require_gcloud() {
  command -v gcloud >/dev/null || die "gcloud is not on PATH: install the Google Cloud CLI (${MIN_GCLOUD_VERSION} or newer)"
  local version
  version="$(gcloud version --format 'value("Google Cloud SDK")')" || die "'gcloud version' failed (above): is the Google Cloud CLI installed correctly?"
  version_at_least "${version}" "${MIN_GCLOUD_VERSION}" ||
    die "gcloud ${version:-(no version)} is older than ${MIN_GCLOUD_VERSION}, which these scripts need (gcloud run jobs execute --tasks/--update-env-vars): gcloud components update (or upgrade the package you installed it with)"
}

# The credentials validation reads the files with (Application Default Credentials, which
# `gcloud auth login` does not set), checked before an execution starts rather than after two
# hours of it. validate-object.ts says what is missing; its exit code (3) is passed on.
require_validation_credentials() {
  local node code=0
  node="$(project_node)"
  "${node}" "${SCRIPTS_DIR}/validate-object.ts" --check-credentials || code=$?
  [[ ${code} -eq 0 ]] || exit "${code}"
}

# Starts an execution of the job with the given `gcloud run jobs execute` flags and prints its
# name. Returns at once: the execution runs in the cloud whatever happens to this script.
start_execution() {
  gcloud run jobs execute "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" "$@" --async --format 'value(metadata.name)'
}

# Looks at execution $1 (of $2 tasks) every POLL_SECONDS until it has ended. Returns 0 when
# all its tasks succeeded, 1 when it ended otherwise, 4 when gcloud failed to describe it
# DESCRIBE_ATTEMPTS times in a row (network, sleep: the execution itself runs on). Sets
# execution_result to what happened ("3 of 3 task(s) succeeded, 0 failed").
# shellcheck disable=SC2034 # execution_result is read by the execute scripts
wait_for_execution() {
  local name="$1" tasks="$2" failures=0 line completed succeeded failed
  execution_result="not finished"
  while true; do
    if line="$(gcloud run jobs executions describe "${name}" --region "${REGION}" --project "${GCP_PROJECT}" \
      --format 'value(status.completionTime,status.succeededCount,status.failedCount)')"; then
      failures=0
      # One line, tab-separated, an unset field empty ("\t\t" while it runs). Split by hand:
      # `read` would merge adjacent tabs and shift the counts.
      completed="${line%%$'\t'*}"
      line="${line#*$'\t'}"
      succeeded="${line%%$'\t'*}"
      failed="${line#*$'\t'}"
      if [[ -n "${completed}" ]]; then
        execution_result="${succeeded:-0} of ${tasks} task(s) succeeded, ${failed:-0} failed"
        [[ "${succeeded:-0}" == "${tasks}" ]] && return 0
        return 1
      fi
    else
      failures=$((failures + 1))
      [[ ${failures} -lt ${DESCRIBE_ATTEMPTS} ]] || return 4
      echo "   could not describe ${name} (${failures} of ${DESCRIBE_ATTEMPTS} attempts); trying again in ${POLL_SECONDS}s" >&2
    fi
    sleep "${POLL_SECONDS}"
  done
}

# For an execution this script stops following (Ctrl-C, or describe kept failing): it runs on
# in the cloud, so starting another for the same pairs now would build them twice at once.
execution_keeps_running() {
  local name="$1"
  echo "execution ${name} keeps running in the cloud: this script stopped following it, the execution did not stop." >&2
  echo "watch it: gcloud run jobs executions describe ${name} --region ${REGION} --project ${GCP_PROJECT}" >&2
}

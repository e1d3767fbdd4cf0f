# shellcheck shell=bash
# Helpers shared by the operator scripts; sourced, never run. Loads the settings
# (scripts/settings.env, or the file BQX_SETTINGS names) and checks them once.

SCRIPTS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PROJECT_ROOT="$(cd "${SCRIPTS_DIR}/.." && pwd)"
export SCRIPTS_DIR PROJECT_ROOT

die() {
  echo "ERROR: $*" >&2
  exit 1
}

usage_error() {
  echo "ERROR: $*" >&2
  echo "${USAGE:-}" >&2
  exit 2
}

# shellcheck source=scripts/settings.env
source "${BQX_SETTINGS:-${SCRIPTS_DIR}/settings.env}" || die "cannot read the settings file ${BQX_SETTINGS:-${SCRIPTS_DIR}/settings.env}"

for name in GCP_PROJECT REGION JOB_NAME IMAGE SERVICE_ACCOUNT OUTPUT_URI; do
  [[ -n "${!name:-}" ]] || die "${name} is empty: set it in scripts/settings.env (or the file BQX_SETTINGS names)"
done
[[ "${OUTPUT_URI}" == gs://* ]] || die "OUTPUT_URI=${OUTPUT_URI}: expected gs://<bucket>[/<prefix>] for the Cloud Run job (scripts/settings.env; is OUTPUT_URI exported in your shell for a local run?)"
[[ -z "${CHECKPOINT_URI:-}" || "${CHECKPOINT_URI}" == gs://* ]] || die "CHECKPOINT_URI=${CHECKPOINT_URI}: expected gs://<bucket>[/<prefix>] or empty"

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

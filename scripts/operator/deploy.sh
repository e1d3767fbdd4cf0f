#!/usr/bin/env bash
# Builds the image from Dockerfile.cloudrun, pushes it, and creates or updates the Cloud Run job
# to run it, with the resources and variables of scripts/operator/settings.env. Also rolls back: with
# --no-build --tag <earlier tag> it points the job at an image already in the registry.
set -euo pipefail

USAGE="usage: scripts/operator/deploy.sh [--tag TAG] [--no-build] [--builder docker|cloud-build]
  --tag TAG       image tag (default: the git commit, with -dirty-<time> for uncommitted changes)
  --no-build      deploy IMAGE:TAG already in the registry (roll back: --no-build --tag <earlier tag>)
  --builder B     docker (default: a local Docker engine) or cloud-build (gcloud builds submit)"

# shellcheck source=scripts/operator/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

tag=""
build=true
builder=docker
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tag) [[ $# -ge 2 ]] || usage_error "--tag needs a value"; tag="$2"; shift 2 ;;
    --no-build) build=false; shift ;;
    --builder) [[ $# -ge 2 ]] || usage_error "--builder needs a value"; builder="$2"; shift 2 ;;
    -h|--help) echo "${USAGE}"; exit 0 ;;
    *) usage_error "unknown argument '$1'" ;;
  esac
done
[[ "${builder}" == docker || "${builder}" == cloud-build ]] || usage_error "--builder ${builder}: expected docker or cloud-build"

if [[ -z "${tag}" ]]; then
  "${build}" || usage_error "--no-build needs --tag: the tag of an image already in ${IMAGE}"
  tag="$(git -C "${PROJECT_ROOT}" rev-parse --short=12 HEAD 2>/dev/null)" || die "no --tag given and ${PROJECT_ROOT} is not a git checkout: pass --tag"
  if [[ -n "$(git -C "${PROJECT_ROOT}" status --porcelain 2>/dev/null)" ]]; then
    tag="${tag}-dirty-$(date -u +%Y%m%d%H%M%S)"
  fi
fi
[[ "${tag}" =~ ^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$ ]] || usage_error "--tag ${tag}: expected letters, digits, '_', '.', '-' (at most 128)"
image_ref="${IMAGE}:${tag}"
require_gcloud
config=""
describe_error="$(mktemp)"
trap 'rm -f "${config}" "${describe_error}"' EXIT

if "${build}"; then
  if [[ "${builder}" == docker ]]; then
    command -v docker >/dev/null || die "docker is not on PATH: install Docker, or use --builder cloud-build"
    echo "== building ${image_ref} (Dockerfile.cloudrun)"
    gcloud auth configure-docker "${IMAGE%%/*}" --quiet
    # Cloud Run runs linux/amd64; an image built for the machine's own arm64 would not start.
    DOCKER_BUILDKIT=1 docker build --platform linux/amd64 --file "${PROJECT_ROOT}/Dockerfile.cloudrun" --tag "${image_ref}" "${PROJECT_ROOT}"
    echo "== pushing ${image_ref}"
    docker push "${image_ref}"
  else
    echo "== building ${image_ref} with Cloud Build"
    config="$(mktemp)"
    cat >"${config}" <<YAML
steps:
  - name: gcr.io/cloud-builders/docker
    env: ["DOCKER_BUILDKIT=1"]
    args: ["build", "--platform", "linux/amd64", "--file", "Dockerfile.cloudrun", "--tag", "${image_ref}", "."]
images: ["${image_ref}"]
YAML
    gcloud builds submit "${PROJECT_ROOT}" --project "${GCP_PROJECT}" --region "${REGION}" --config "${config}"
  fi
else
  echo "== checking ${image_ref} is in the registry"
  gcloud artifacts docker images describe "${image_ref}" --project "${GCP_PROJECT}" >/dev/null ||
    die "no image ${image_ref}: list the tags with 'gcloud artifacts docker tags list ${IMAGE} --project ${GCP_PROJECT}'"
fi

# The job's own configuration. Never TARGET_PAIR: a default pair once made executions silently
# build the wrong one; each execution passes --update-env-vars TARGET_PAIR=<pair> (or PAIRS).
env_vars="BACKEND=gcp,GCP_PROJECT=${GCP_PROJECT},OUTPUT_URI=${OUTPUT_URI},LOG_FORMAT=json"
[[ -z "${BQ_LOCATION:-}" ]] || env_vars+=",BQ_LOCATION=${BQ_LOCATION}"
[[ -z "${JOB_EXTRA_ENV_VARS:-}" ]] || env_vars+=",${JOB_EXTRA_ENV_VARS}"
[[ ",${env_vars}," != *",TARGET_PAIR="* && ",${env_vars}," != *",PAIRS="* ]] ||
  die "JOB_EXTRA_ENV_VARS sets TARGET_PAIR or PAIRS: name the pairs per execution instead (execute_production_26pairs.sh, execute_all_pairs_parallel.sh)"
extra_flags=()
read -r -a extra_flags <<<"${JOB_EXTRA_FLAGS:-}"

# One task by default: every execution names its own (--tasks), and the execute scripts set the
# job's parallelism for theirs. Parallelism may never exceed the task count (Cloud Run refuses
# the job, and any execution of fewer tasks than the job's parallelism).
flags=(
  --image "${image_ref}"
  --region "${REGION}"
  --project "${GCP_PROJECT}"
  --service-account "${SERVICE_ACCOUNT}"
  --cpu "${CPU}"
  --memory "${MEMORY}"
  --task-timeout "${TASK_TIMEOUT}"
  --max-retries "${MAX_RETRIES}"
  --tasks 1
  --parallelism 1
  --set-env-vars "${env_vars}"
  ${extra_flags[@]+"${extra_flags[@]}"}
)

# The job as `describe` returns it, a v1 (Knative) Job: its image is at
# spec.template.spec.template.spec.containers[0].image. A job that does not exist is created;
# any other failure (credentials, network) stops here rather than trying to create it.
previous=""
if ! previous="$(gcloud run jobs describe "${JOB_NAME}" --region "${REGION}" --project "${GCP_PROJECT}" \
  --format 'value(spec.template.spec.template.spec.containers[0].image)' 2>"${describe_error}")"; then
  grep -q "Cannot find job \[${JOB_NAME}\]" "${describe_error}" || die "cannot tell whether job ${JOB_NAME} exists in ${REGION}: $(cat "${describe_error}")"
  previous=""
fi
if [[ -n "${previous}" ]]; then
  echo "== updating job ${JOB_NAME} (was ${previous})"
  gcloud run jobs update "${JOB_NAME}" "${flags[@]}"
else
  echo "== creating job ${JOB_NAME}"
  gcloud run jobs create "${JOB_NAME}" "${flags[@]}"
fi

echo "deployed: job ${JOB_NAME} in ${REGION} runs ${image_ref}"
if [[ -n "${previous}" && "${previous}" != "${image_ref}" ]]; then
  echo "roll back with: scripts/operator/deploy.sh --no-build --tag ${previous##*:}"
fi
echo "next: scripts/operator/execute_production_26pairs.sh --pairs eurusd   (one pair, validated)"

#!/usr/bin/env bash
# Provision bicep/main.bicep into a resource group, publish the function app to
# Flex Consumption and send a few test events. Needs: az >= 2.60.0 (logged in),
# python3 (packaging); the test events run with the project's .venv (created
# with `make setup` when missing). `azd up` does the same provision + deploy in
# one step (see docs/deploy.md).
#
# Usage:
#   scripts/deploy.sh                     register providers, provision, create the
#                                         Key Vault secrets if absent, publish, send test events
#   scripts/deploy.sh register-providers  only check/register the resource providers
#   scripts/deploy.sh ensure-secrets      only create each Key Vault secret that is absent
#                                         (the azd postprovision hook in azure.yaml runs this)
#   scripts/deploy.sh wait-for-roles      only wait until the app identity's newest role
#                                         assignment is ROLE_PROPAGATION_SECONDS old (the
#                                         azd predeploy hook in azure.yaml runs this)
# Environment:
#   AZURE_ENV_NAME          environment name (default: interventions-dev)
#   AZURE_LOCATION          region of a NEW resource group, with Flex Consumption (default:
#                           swedencentral); an existing group keeps its region and the
#                           resources go there (main.bicep location = the group's region)
#   AZURE_RESOURCE_GROUP    resource group (default: rg-$AZURE_ENV_NAME)
#   AZURE_PRINCIPAL_ID / AZURE_PRINCIPAL_TYPE
#                           deployer (default: the signed-in az principal): gets Key Vault
#                           Secrets Officer on the vault to create the secrets
#   OPERATOR_PRINCIPAL_ID / OPERATOR_PRINCIPAL_TYPE
#                           optional operator: parked batches and the summary report
#   DURABLE_BACKEND         azureStorage (default) | durableTaskScheduler
#   HOST_STORAGE_SKU        host storage SKU override (default: ZRS where the region has it, else LRS)
#   PRODUCER_PRINCIPAL_ID   object id allowed to send events (default: the signed-in az principal)
#   PRODUCER_PRINCIPAL_TYPE User | ServicePrincipal | Group (default: from the signed-in az account)
#   PYTHON                  interpreter for the test events (default: .venv/bin/python)
#   RETRY_ATTEMPTS / RETRY_DELAY / RETRY_MAX_DELAY
#                           retries of the role-dependent steps (default: 8 attempts, 15 s
#                           back-off doubling up to 120 s, about 10 minutes in all)
#   ROLE_PROPAGATION_SECONDS / ROLE_POLL_SECONDS   wait-for-roles (default: 180 / 30)
#   DEPLOY_ATTEMPTS         deployments tried when one fails because a brand-new identity
#                           is not yet known to the directory (default: 3)
#   SKIP_PROVIDER_REGISTRATION=1 to only check the providers (print what to run)
#   SKIP_PUBLISH=1 / SKIP_TEST_EVENTS=1 to stop after provisioning / publishing
#
# Publishing uses `az functionapp deployment source config-zip`, which for a
# Flex Consumption app posts the package to the one-deploy endpoint
# (/api/publish) with an Entra token. Azure Functions Core Tools is not used,
# even when installed: older releases have been reported to reject an app whose
# host storage is identity-based (AzureWebJobsStorage__*, no connection string).
set -euo pipefail

MIN_AZ_VERSION="2.60.0" # Flex Consumption support in the Azure CLI
RETRY_ATTEMPTS="${RETRY_ATTEMPTS:-8}"
RETRY_DELAY="${RETRY_DELAY:-15}"
RETRY_MAX_DELAY="${RETRY_MAX_DELAY:-120}"
ROLE_PROPAGATION_SECONDS="${ROLE_PROPAGATION_SECONDS:-180}"
ROLE_POLL_SECONDS="${ROLE_POLL_SECONDS:-30}"
DEPLOY_ATTEMPTS="${DEPLOY_ATTEMPTS:-3}"
# Resource providers the templates create resources of; a fresh subscription may
# have some unregistered (MissingSubscriptionRegistration).
REQUIRED_PROVIDERS=(
  Microsoft.Web
  Microsoft.EventHub
  Microsoft.DocumentDB
  Microsoft.Insights
  Microsoft.OperationalInsights
  Microsoft.ManagedIdentity
  Microsoft.DurableTask
  Microsoft.KeyVault
  Microsoft.Storage
)

log() { printf '\n==> %s\n' "$*" >&2; }

# retry_roles CMD [ARGS...]: run CMD until it succeeds, at most RETRY_ATTEMPTS
# times, sleeping RETRY_DELAY, 2x, 4x ... (capped at RETRY_MAX_DELAY) in between.
# For steps that fail while a new identity's role assignments propagate: the
# Flex package upload (403 from storage, reported as BlobUploadFailedException),
# the first sends with the producer's Azure Event Hubs Data Sender role.
retry_roles() {
  local attempt=1 delay="${RETRY_DELAY}" status
  while true; do
    status=0
    "$@" || status=$?
    if ((status == 0)); then
      return 0
    fi
    if ((attempt >= RETRY_ATTEMPTS)); then
      log "giving up after ${attempt}/${RETRY_ATTEMPTS} attempts (exit ${status}): $*"
      return "${status}"
    fi
    attempt=$((attempt + 1))
    log "waiting for role assignments to propagate (attempt ${attempt}/${RETRY_ATTEMPTS} in ${delay}s; last exit ${status})"
    sleep "${delay}"
    delay=$((delay * 2 > RETRY_MAX_DELAY ? RETRY_MAX_DELAY : delay * 2))
  done
}

# version_ge A B: true when version A >= version B.
version_ge() {
  [[ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" == "$2" ]]
}

require_az() {
  command -v az >/dev/null || {
    echo "az (Azure CLI) is required" >&2
    exit 1
  }
  local version
  version="$(az version --query '"azure-cli"' -o tsv 2>/dev/null || echo 0)"
  version_ge "${version}" "${MIN_AZ_VERSION}" || {
    echo "az ${version} is too old: Flex Consumption needs Azure CLI ${MIN_AZ_VERSION} or later (az upgrade)" >&2
    exit 1
  }
  az account show -o none 2>/dev/null || {
    echo "run 'az login' first" >&2
    exit 1
  }
}

# role_assignment_age PRINCIPAL_ID: seconds since the newest Azure RBAC role
# assignment of the principal was created; fails when none can be read.
role_assignment_age() {
  local created
  created="$(az role assignment list --all --assignee "$1" --query '[].createdOn' -o tsv 2>/dev/null)" || return 1
  [[ -n "${created//[[:space:]]/}" ]] || return 1
  python3 -c '
import sys
from datetime import datetime, timezone
stamps = [datetime.fromisoformat(s.strip().replace("Z", "+00:00")) for s in sys.stdin if s.strip()]
newest = max(t if t.tzinfo else t.replace(tzinfo=timezone.utc) for t in stamps)
print(max(0, int((datetime.now(timezone.utc) - newest).total_seconds())))
' <<<"${created}"
}

# wait_for_role_propagation PRINCIPAL_ID: bounded wait until the principal's newest
# role assignment is ROLE_PROPAGATION_SECONDS old (returns at once on later runs).
wait_for_role_propagation() {
  local principal="$1" age remaining attempts n step
  if ! age="$(role_assignment_age "${principal}")"; then
    log "cannot read the role assignments of ${principal}; not waiting (if publishing fails with 403, run it again in a few minutes)"
    return 0
  fi
  remaining=$((ROLE_PROPAGATION_SECONDS - age))
  ((remaining > 0)) || return 0
  attempts=$(((remaining + ROLE_POLL_SECONDS - 1) / ROLE_POLL_SECONDS))
  for ((n = 1; n <= attempts; n++)); do
    step=$((remaining < ROLE_POLL_SECONDS ? remaining : ROLE_POLL_SECONDS))
    log "waiting for role assignments to propagate (attempt ${n}/${attempts}: newest is ${age}s old, waiting for ${ROLE_PROPAGATION_SECONDS}s)"
    sleep "${step}"
    age=$((age + step))
    remaining=$((remaining - step))
  done
}

# register_providers: every REQUIRED_PROVIDERS namespace Registered, registering
# the missing ones (idempotent; needs */register/action on the subscription, e.g.
# Contributor). With SKIP_PROVIDER_REGISTRATION=1, or when registering is refused,
# prints the commands for someone who may and fails.
register_providers() {
  local ns state missing=()
  for ns in "${REQUIRED_PROVIDERS[@]}"; do
    state="$(az provider show --namespace "${ns}" --query registrationState -o tsv 2>/dev/null || echo Unknown)"
    [[ "${state}" == "Registered" ]] || missing+=("${ns}")
  done
  if ((${#missing[@]} == 0)); then
    log "resource providers registered: ${REQUIRED_PROVIDERS[*]}"
    return 0
  fi
  if [[ "${SKIP_PROVIDER_REGISTRATION:-0}" != "1" ]]; then
    local failed=()
    for ns in "${missing[@]}"; do
      log "registering resource provider ${ns}"
      az provider register --namespace "${ns}" --wait -o none || failed+=("${ns}")
    done
    ((${#failed[@]} == 0)) && return 0
    missing=("${failed[@]}")
  fi
  log "resource providers not registered: ${missing[*]}; someone with rights on the subscription runs:"
  for ns in "${missing[@]}"; do
    printf '  az provider register --namespace %s --wait\n' "${ns}" >&2
  done
  return 1
}

# new_secret_file: a file (mode 600) holding 32 random bytes, base64, no newline;
# prints its path. The value never appears on a command line.
new_secret_file() {
  local file
  file="$(umask 077 && mktemp)"
  openssl rand -base64 32 | tr -d '\n' >"${file}"
  printf '%s\n' "${file}"
}

# ensure_secret VAULT NAME: create the secret with a random 32-byte value only when
# the vault answers SecretNotFound. An existing secret is never touched (a new
# erasure key would stop existing erasure records matching). Any other answer (403
# while the deployer's Key Vault Secrets Officer role propagates, network) is
# retried under retry_roles; a secret deleted but recoverable is reported, not
# replaced. Prints "created" or "exists".
ensure_secret() {
  local vault="$1" name="$2" err file status
  err="$(az keyvault secret show --vault-name "${vault}" --name "${name}" --query id -o tsv 2>&1 >/dev/null)" && {
    echo exists
    return 0
  }
  if [[ "${err}" != *SecretNotFound* ]]; then
    log "cannot read secret ${name} in ${vault} yet: ${err//$'\n'/ }"
    return 1
  fi
  file="$(new_secret_file)"
  # Never store an empty or short value (openssl failing inside this retried
  # function does not stop the script): 32 bytes are 44 base64 characters.
  if [[ "$(wc -c <"${file}" | tr -d ' ')" != 44 ]]; then
    rm -f "${file}"
    log "could not generate a 32-byte key for ${name} (openssl rand)"
    return 1
  fi
  status=0
  err="$(az keyvault secret set --vault-name "${vault}" --name "${name}" --file "${file}" --encoding utf-8 \
    --content-type 'pseudonymisation key (HMAC-SHA-256), created once; see docs/deploy.md' -o none 2>&1)" || status=$?
  rm -f "${file}"
  if ((status != 0)); then
    if [[ "${err}" == *ObjectIsDeletedButRecoverable* ]]; then
      echo "secret ${name} is deleted but recoverable: recover it (keeps the key) with" \
        "az keyvault secret recover --vault-name ${vault} --name ${name}" >&2
      exit 2 # not retried: leaves the $(...) subshell that runs it, and with it retry_roles
    fi
    log "cannot create secret ${name} in ${vault} yet: ${err//$'\n'/ }"
    return "${status}"
  fi
  echo created
}

# cmd_ensure_secrets: the azd postprovision hook and deploy.sh after provisioning.
# Reads AZURE_KEY_VAULT_NAME and AZURE_KEY_VAULT_SECRET_NAMES (template outputs);
# restarts the app (AZURE_FUNCTION_APP_NAME, AZURE_RESOURCE_GROUP) when a secret was
# created, so its Key Vault references resolve now instead of at the next refresh.
cmd_ensure_secrets() {
  local vault="${AZURE_KEY_VAULT_NAME:-}" names="${AZURE_KEY_VAULT_SECRET_NAMES:-}" name result created=0
  if [[ -z "${vault}" || -z "${names}" ]]; then
    echo "AZURE_KEY_VAULT_NAME / AZURE_KEY_VAULT_SECRET_NAMES are not set: provision first (azd provision or scripts/deploy.sh)" >&2
    return 1
  fi
  command -v openssl >/dev/null || {
    echo "openssl is required to generate the keys" >&2
    return 1
  }
  if [[ -n "${AZURE_PRINCIPAL_ID:-}" && "${AZURE_PRINCIPAL_ID}" == "${AZURE_APP_PRINCIPAL_ID:-}" ]]; then
    # An azd environment provisioned when the app identity's output was named
    # AZURE_PRINCIPAL_ID: azd then passed the app identity as deployerPrincipalId.
    echo "AZURE_PRINCIPAL_ID is the app identity, so the template made it the deployer; run" \
      "azd env set AZURE_PRINCIPAL_ID \"\$(az ad signed-in-user show --query id -o tsv)\" and azd provision again" >&2
    return 1
  fi
  for name in ${names}; do
    result="$(retry_roles ensure_secret "${vault}" "${name}")" || {
      echo "secret ${name} in ${vault} could not be checked or created; the deployer needs Key Vault Secrets Officer on the vault (deployerPrincipalId, docs/deploy.md)" >&2
      return 1
    }
    log "secret ${name} in ${vault}: ${result}"
    [[ "${result}" == created ]] && created=1
  done
  if ((created)) && [[ -n "${AZURE_FUNCTION_APP_NAME:-}" && -n "${AZURE_RESOURCE_GROUP:-}" ]]; then
    log "restarting ${AZURE_FUNCTION_APP_NAME} so its Key Vault references resolve the new secrets"
    az functionapp restart --resource-group "${AZURE_RESOURCE_GROUP}" --name "${AZURE_FUNCTION_APP_NAME}" -o none ||
      log "restart failed; the references resolve at the next restart or deployment"
  fi
  return 0
}

# deploy_template NAME ARGS...: az deployment group create, re-run (it is
# idempotent) at most DEPLOY_ATTEMPTS times only when it failed because a new
# principal is not yet in the directory (the Cosmos SQL role assignment of a
# brand-new identity carries no principalType); any other failure stops at once.
deploy_template() {
  local attempt=1 err status
  while true; do
    status=0
    err="$(az deployment group create "$@" -o none 2>&1)" || status=$?
    ((status == 0)) && return 0
    printf '%s\n' "${err}" >&2
    if ! grep -qiE 'PrincipalNotFound|does not exist in the directory|principal .* (was )?not found' <<<"${err}" ||
      ((attempt >= DEPLOY_ATTEMPTS)); then
      return "${status}"
    fi
    attempt=$((attempt + 1))
    log "a new identity is not in the directory yet; deploying again (attempt ${attempt}/${DEPLOY_ATTEMPTS} in ${RETRY_DELAY}s)"
    sleep "${RETRY_DELAY}"
  done
}

# The azd predeploy hook: azd exports the template outputs (AZURE_APP_PRINCIPAL_ID
# is the app identity; AZURE_PRINCIPAL_ID is azd's signed-in deployer) to hooks.
# Never fails the deployment.
cmd_wait_for_roles() {
  local principal="${AZURE_APP_PRINCIPAL_ID:-}"
  if [[ -z "${principal}" ]]; then
    log "AZURE_APP_PRINCIPAL_ID is not set (provision first); not waiting for role assignments"
    return 0
  fi
  if ! command -v az >/dev/null || ! az account show -o none 2>/dev/null; then
    log "az is missing or not logged in: cannot check role assignment age; if the deploy fails with 403, run 'azd deploy' again in a few minutes"
    return 0
  fi
  wait_for_role_propagation "${principal}"
}

# Zip the repo root for the one-deploy endpoint, honouring .funcignore.
package_app() {
  mkdir -p .dist
  python3 - .dist/app.zip <<'PY'
import fnmatch, os, sys, zipfile
ignore = [".funcignore", ".git", ".git/*", ".dist", ".dist/*", ".azure", ".venv*", "*.pyc", "__pycache__"]
if os.path.exists(".funcignore"):
    ignore += [l.strip().rstrip("/") for l in open(".funcignore") if l.strip() and not l.startswith("#")]
def skipped(rel):
    parts = rel.split("/")
    return any(fnmatch.fnmatch(rel, p) or fnmatch.fnmatch(parts[0], p) or fnmatch.fnmatch(rel, p + "/*") for p in ignore)
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for root, dirs, files in os.walk("."):
        dirs[:] = [d for d in dirs if not skipped(os.path.relpath(os.path.join(root, d), "."))]
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), ".")
            if not skipped(rel):
                z.write(rel, rel)
PY
}

# The Python that runs scripts/send_events.py: the project's .venv (it has the
# Azure SDKs; the system python3 does not), created with `make setup` if missing.
# Prints the interpreter, or fails when no usable one could be made.
test_events_python() {
  local python="${PYTHON:-.venv/bin/python}"
  if [[ ! -x "${python}" ]] && command -v make >/dev/null; then
    log "no ${python}: creating the project's virtualenv with 'make setup'"
    make setup >&2 || log "'make setup' failed"
  fi
  [[ -x "${python}" ]] && "${python}" -c 'import azure.eventhub, azure.identity, msgspec, tqdm' 2>/dev/null || return 1
  printf '%s\n' "${python}"
}

main() {
  export AZURE_ENV_NAME="${AZURE_ENV_NAME:-interventions-dev}"
  export AZURE_LOCATION="${AZURE_LOCATION:-swedencentral}"
  export HOST_STORAGE_SKU="${HOST_STORAGE_SKU:-}"
  local resource_group="${AZURE_RESOURCE_GROUP:-rg-${AZURE_ENV_NAME}}"
  local durable_backend="${DURABLE_BACKEND:-azureStorage}"
  local deployment_name
  deployment_name="interventions-$(date -u +%Y%m%d%H%M%S)"

  require_az

  # The signed-in principal: the deployer (Key Vault Secrets Officer, to create the
  # secrets) and, unless PRODUCER_PRINCIPAL_ID is set, the producer (Azure Event
  # Hubs Data Sender, so the test send works).
  local signed_in_id="" signed_in_type="User"
  case "$(az account show --query user.type -o tsv 2>/dev/null || true)" in
    user)
      signed_in_id="$(az ad signed-in-user show --query id -o tsv 2>/dev/null || true)"
      ;;
    servicePrincipal)
      signed_in_id="$(az ad sp show --id "$(az account show --query user.name -o tsv)" --query id -o tsv 2>/dev/null || true)"
      signed_in_type="ServicePrincipal"
      ;;
  esac
  if [[ -z "${PRODUCER_PRINCIPAL_ID:-}" ]]; then
    PRODUCER_PRINCIPAL_ID="${signed_in_id}"
    PRODUCER_PRINCIPAL_TYPE="${PRODUCER_PRINCIPAL_TYPE:-${signed_in_type}}"
  fi
  export PRODUCER_PRINCIPAL_ID="${PRODUCER_PRINCIPAL_ID:-}"
  export PRODUCER_PRINCIPAL_TYPE="${PRODUCER_PRINCIPAL_TYPE:-User}"
  export AZURE_PRINCIPAL_ID="${AZURE_PRINCIPAL_ID:-${signed_in_id}}"
  export AZURE_PRINCIPAL_TYPE="${AZURE_PRINCIPAL_TYPE:-${signed_in_type}}"
  export OPERATOR_PRINCIPAL_ID="${OPERATOR_PRINCIPAL_ID:-}"
  export OPERATOR_PRINCIPAL_TYPE="${OPERATOR_PRINCIPAL_TYPE:-User}"
  [[ -n "${AZURE_PRINCIPAL_ID}" ]] ||
    log "cannot tell the signed-in principal: set AZURE_PRINCIPAL_ID, or the secrets step needs someone with Key Vault Secrets Officer"

  register_providers

  local existing_location
  if existing_location="$(az group show --name "${resource_group}" --query location -o tsv 2>/dev/null)"; then
    log "resource group ${resource_group} exists in ${existing_location}; deploying there"
  else
    log "resource group ${resource_group} (${AZURE_LOCATION})"
    az group create --name "${resource_group}" --location "${AZURE_LOCATION}" \
      --tags "azd-env-name=${AZURE_ENV_NAME}" -o none
  fi

  log "deploying bicep/main.bicep as ${deployment_name} (durableBackend=${durable_backend})"
  deploy_template \
    --resource-group "${resource_group}" \
    --name "${deployment_name}" \
    --template-file bicep/main.bicep \
    --parameters bicep/main.bicepparam \
    --parameters "durableBackend=${durable_backend}"

  output() {
    az deployment group show --resource-group "${resource_group}" --name "${deployment_name}" \
      --query "properties.outputs.$1.value" -o tsv
  }
  local function_app eventhub_fqdn
  function_app="$(output AZURE_FUNCTION_APP_NAME)"
  eventhub_fqdn="$(output EVENTHUB_FULLY_QUALIFIED_NAMESPACE)"
  log "function app ${function_app}; Event Hubs ${eventhub_fqdn}; Cosmos $(output COSMOS_ENDPOINT); storage $(output AZURE_STORAGE_SKU)"

  # The pseudonymisation keys: created once, only when absent (never by the template).
  AZURE_KEY_VAULT_NAME="$(output AZURE_KEY_VAULT_NAME)" \
    AZURE_KEY_VAULT_SECRET_NAMES="$(output AZURE_KEY_VAULT_SECRET_NAMES)" \
    AZURE_FUNCTION_APP_NAME="${function_app}" AZURE_RESOURCE_GROUP="${resource_group}" \
    cmd_ensure_secrets

  if [[ "${SKIP_PUBLISH:-0}" != "1" ]]; then
    log "packaging (honours .funcignore) and publishing with az (Flex one-deploy, remote build)"
    package_app
    # The app identity uploads the package to its deployment container: on a
    # first deployment its Storage Blob Data Owner role may not be effective yet.
    retry_roles az functionapp deployment source config-zip \
      --resource-group "${resource_group}" --name "${function_app}" \
      --src .dist/app.zip --build-remote true -o none
  fi

  if [[ "${SKIP_TEST_EVENTS:-0}" != "1" ]]; then
    local python
    local -a send_args=(-m scripts.send_events --namespace "${eventhub_fqdn}" --players 3 --duration 5)
    if python="$(test_events_python)"; then
      log "sending test events with ${python}"
      # The producer's Azure Event Hubs Data Sender role may not be effective yet.
      retry_roles "${python}" "${send_args[@]}"
    else
      log "skipping test events: no Python with the Azure SDKs; run: make setup && .venv/bin/python ${send_args[*]}"
    fi
  fi

  log "done: az functionapp show -g ${resource_group} -n ${function_app}"
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  case "${1:-deploy}" in
    deploy) main ;;
    wait-for-roles) cmd_wait_for_roles ;;
    ensure-secrets) cmd_ensure_secrets ;;
    register-providers)
      require_az
      register_providers
      ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d' ;;
    *)
      echo "usage: $0 [deploy|register-providers|ensure-secrets|wait-for-roles]" >&2
      exit 2
      ;;
  esac
fi

#!/usr/bin/env bash
# Provision bicep/main.bicep into a resource group, publish the function app to
# Flex Consumption and send a few test events. Needs: az (logged in), python3
# (packaging + scripts/send_events.py), optionally Azure Functions Core Tools.
# `azd up` does the same provision + deploy in one step (see docs/deploy.md).
#
# Usage: scripts/deploy.sh            # env vars below choose names/region
#   AZURE_ENV_NAME        environment name (default: interventions-dev)
#   AZURE_LOCATION        region with Flex Consumption (default: swedencentral)
#   AZURE_RESOURCE_GROUP  resource group (default: rg-$AZURE_ENV_NAME)
#   DURABLE_BACKEND       azureStorage (default) | durableTaskScheduler
#   PRODUCER_PRINCIPAL_ID object id allowed to send events (default: signed-in user)
#   SKIP_PUBLISH=1 / SKIP_TEST_EVENTS=1 to stop after provisioning / publishing
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

export AZURE_ENV_NAME="${AZURE_ENV_NAME:-interventions-dev}"
export AZURE_LOCATION="${AZURE_LOCATION:-swedencentral}"
AZURE_RESOURCE_GROUP="${AZURE_RESOURCE_GROUP:-rg-${AZURE_ENV_NAME}}"
DURABLE_BACKEND="${DURABLE_BACKEND:-azureStorage}"
DEPLOYMENT_NAME="interventions-$(date -u +%Y%m%d%H%M%S)"

log() { printf '\n==> %s\n' "$*" >&2; }

command -v az >/dev/null || { echo "az (Azure CLI) is required" >&2; exit 1; }
az account show --query '{subscription:name, id:id}' -o tsv >/dev/null \
  || { echo "run 'az login' first" >&2; exit 1; }

if [[ -z "${PRODUCER_PRINCIPAL_ID:-}" ]]; then
  # The signed-in user gets Azure Event Hubs Data Sender so the test send works.
  PRODUCER_PRINCIPAL_ID="$(az ad signed-in-user show --query id -o tsv 2>/dev/null || true)"
fi
export PRODUCER_PRINCIPAL_ID

log "resource group ${AZURE_RESOURCE_GROUP} (${AZURE_LOCATION})"
az group create --name "${AZURE_RESOURCE_GROUP}" --location "${AZURE_LOCATION}" \
  --tags "azd-env-name=${AZURE_ENV_NAME}" -o none

log "deploying bicep/main.bicep as ${DEPLOYMENT_NAME} (durableBackend=${DURABLE_BACKEND})"
az deployment group create \
  --resource-group "${AZURE_RESOURCE_GROUP}" \
  --name "${DEPLOYMENT_NAME}" \
  --template-file bicep/main.bicep \
  --parameters bicep/main.bicepparam \
  --parameters "durableBackend=${DURABLE_BACKEND}" \
  -o none

output() {
  az deployment group show --resource-group "${AZURE_RESOURCE_GROUP}" --name "${DEPLOYMENT_NAME}" \
    --query "properties.outputs.$1.value" -o tsv
}
FUNCTION_APP="$(output AZURE_FUNCTION_APP_NAME)"
EVENTHUB_FQDN="$(output EVENTHUB_FULLY_QUALIFIED_NAMESPACE)"
log "function app ${FUNCTION_APP}; Event Hubs ${EVENTHUB_FQDN}; Cosmos $(output COSMOS_ENDPOINT)"

if [[ "${SKIP_PUBLISH:-0}" != "1" ]]; then
  if command -v func >/dev/null; then
    log "publishing with Azure Functions Core Tools (remote build)"
    func azure functionapp publish "${FUNCTION_APP}" --python
  else
    log "packaging (honours .funcignore) and publishing with az (remote build)"
    mkdir -p .dist
    python3 - .dist/app.zip <<'PY'
import fnmatch, os, sys, zipfile
ignore = [".git", ".git/*", ".dist", ".dist/*", ".venv*", "*.pyc", "__pycache__"]
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
    az functionapp deployment source config-zip \
      --resource-group "${AZURE_RESOURCE_GROUP}" --name "${FUNCTION_APP}" \
      --src .dist/app.zip --build-remote true -o none
  fi
fi

if [[ "${SKIP_TEST_EVENTS:-0}" != "1" ]]; then
  log "sending test events (role assignments can take a few minutes to apply)"
  python3 -m scripts.send_events --namespace "${EVENTHUB_FQDN}" --players 3 --duration 5
fi

log "done: az functionapp show -g ${AZURE_RESOURCE_GROUP} -n ${FUNCTION_APP}"

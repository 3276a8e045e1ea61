"""Issue 19, infrastructure side: Key Vault and the pseudonymisation keys, parked-batch
retention, the checkpoint account, provider registration and the smaller deployability
fixes. Templates are read with tree-sitter-bicep (helpers of test_bicep_structure);
deploy.sh's secret, provider and deployment helpers run in bash with `az`, `openssl`
and `sleep` replaced by shell functions (no Azure is reachable here: these stand in
for live Azure only). Each checker also runs on a small bad input so it can fail.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from test_bicep_structure import (
    BICEP,
    BICEP_FILES,
    FUNCTION_APP,
    KEY_VAULT_REFERENCE,
    MAIN,
    PARAM_FILE,
    REPO,
    Node,
    _variables,
    app_settings,
    body_object,
    declarations,
    is_existing,
    parse,
    properties,
    resource_type,
    text,
    walk,
)
from test_deploy_tooling import AZURE_YAML, azd_hook, run_sourced

pytestmark = pytest.mark.iac

STORAGE = BICEP / "modules" / "storage.bicep"
EVENT_HUBS = BICEP / "modules" / "eventhubs.bicep"
RBAC = BICEP / "modules" / "rbac.bicep"
KEY_VAULT = BICEP / "modules" / "keyvault.bicep"
DEPLOY_DOC = REPO / "docs" / "deploy.md"
HOOKS = REPO / "scripts" / "hooks"

PROVIDERS = (
    "Microsoft.Web",
    "Microsoft.EventHub",
    "Microsoft.DocumentDB",
    "Microsoft.Insights",
    "Microsoft.OperationalInsights",
    "Microsoft.ManagedIdentity",
    "Microsoft.DurableTask",
    "Microsoft.KeyVault",
    "Microsoft.Storage",
)
ROLE_IDS = {
    "keyVaultSecretsUser": "4633458b-17de-408a-b874-0445c86b69e6",
    "keyVaultSecretsOfficer": "b86a8fe4-44ce-4948-aee5-eccb2c155cd7",
    "storageBlobDataContributor": "ba92f5b4-2d11-453d-a403-e96b0029c9fe",
    "eventHubsDataSender": "2b629674-e913-4c01-ae53-ef4638d8f975",
}
COSMOS_DATA_READER = "00000000-0000-0000-0000-000000000001"


def resources(source: str) -> dict[str, Node]:
    return {d.name: d.node for d in declarations(parse(source), "resource_declaration")}


def body(node: Node) -> dict[str, Node]:
    return properties(body_object(node))


def inner(node: Node) -> dict[str, Node]:
    return properties(body(node).get("properties"))


def condition(node: Node) -> str:
    cond = next((c for c in node.named_children if c.type == "if_statement"), None)
    return "" if cond is None else re.sub(r"\s+", "", text(cond.named_children[0]))


# --------------------------------------------------------------------------- checkers


def vault_problems(source: str) -> list[str]:
    vaults = [
        n for n in resources(source).values() if resource_type(n).startswith("Microsoft.KeyVault/vaults@")
    ]
    if len(vaults) != 1:
        return [f"expected one Microsoft.KeyVault/vaults, found {len(vaults)}"]
    props = inner(vaults[0])
    want = {
        "enableRbacAuthorization": "true",
        "enablePurgeProtection": "true",
        "enableSoftDelete": "true",
        "publicNetworkAccess": "'Enabled'",
    }
    problems = [
        f"{k} is {text(props.get(k))!r}, want {v}" for k, v in want.items() if text(props.get(k)) != v
    ]
    if "accessPolicies" in props:
        problems.append("access policies next to RBAC authorisation")
    return problems


def secret_resources(source: str) -> list[str]:
    """Any Key Vault secret declared in a template (a redeploy would overwrite its value)."""
    return [
        f"{name}: {resource_type(node)}"
        for name, node in resources(source).items()
        if "Microsoft.KeyVault/vaults/secrets@" in resource_type(node) and not is_existing(node)
    ]


def lifecycle_problems(source: str) -> list[str]:
    res = resources(source)
    policies = [
        n
        for n in res.values()
        if resource_type(n).startswith("Microsoft.Storage/storageAccounts/managementPolicies@")
    ]
    if not policies:
        return ["no lifecycle management policy"]
    parked = next((name for name, n in res.items() if text(body(n).get("name")) == "'parked-batches'"), None)
    if parked is None:
        return ["no parked-batches container"]
    problems = []
    rules = properties(inner(policies[0]).get("policy")).get("rules")
    found = False
    for rule in [] if rules is None else rules.named_children:
        definition = properties(properties(rule).get("definition"))
        prefixes = text(properties(definition.get("filters")).get("prefixMatch"))
        delete = properties(properties(properties(definition.get("actions")).get("baseBlob")).get("delete"))
        days = text(delete.get("daysAfterModificationGreaterThan"))
        if f"{parked}.name" in prefixes or "parked-batches/" in prefixes:
            found = True
            if days != "parkedBatchRetentionDays":
                problems.append(
                    f"parked rule deletes after {days!r}, not the parkedBatchRetentionDays parameter"
                )
    if not found:
        problems.append("no rule deletes blobs under parked-batches/")
    return problems


def blob_soft_delete_problems(source: str) -> list[str]:
    problems = []
    for name, node in resources(source).items():
        if not resource_type(node).startswith("Microsoft.Storage/storageAccounts/blobServices@"):
            continue
        props = inner(node)
        enabled = text(properties(props.get("deleteRetentionPolicy")).get("enabled"))
        if enabled != "false":
            problems.append(f"{name}: blob soft delete enabled={enabled!r} on the checkpoint account")
        if text(props.get("isVersioningEnabled")) not in ("", "false"):
            problems.append(f"{name}: blob versioning on the checkpoint account")
    return problems


def unconditional_zone_redundancy(source: str) -> list[str]:
    return [
        f"line {n.start_point[0] + 1}: {text(n)}"
        for n in walk(parse(source))
        if n.type == "object_property"
        and text(n.named_children[0]) == "zoneRedundant"
        and text(n.named_children[-1]) == "true"
    ]


def table_uri_with_dts_problems(source: str) -> list[str]:
    """AzureWebJobsStorage__tableServiceUri may only sit in the non-DTS branch of a
    `useDts ? {} : {...}` variable."""
    variables = _variables(parse(source))
    problems = []
    for name, value in variables.items():
        if "AzureWebJobsStorage__tableServiceUri" not in text(value):
            continue
        if (
            value.type != "ternary_expression"
            or re.sub(r"\s+", "", text(value.named_children[0])) != "useDts"
        ):
            problems.append(f"var {name} sets the table URI whatever the backend")
        elif "tableServiceUri" in text(value.named_children[1]):
            problems.append(f"var {name} sets the table URI with the Durable Task Scheduler")
    return problems


# --------------------------------------------------------------------------- item 1: Key Vault


def test_the_vault_has_rbac_purge_protection_and_soft_delete() -> None:
    assert vault_problems(KEY_VAULT.read_text()) == []
    modules = {d.name: d.node for d in declarations(parse(MAIN.read_text()), "module_declaration")}
    assert "keyvault.bicep" in text(modules["keyVault"]) and condition(modules["keyVault"]) == ""


@pytest.mark.parametrize("path", BICEP_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_no_template_declares_a_secret(path: Path) -> None:
    assert secret_resources(path.read_text()) == []


def test_the_app_identity_reads_and_the_deployer_writes_secrets() -> None:
    res = resources(RBAC.read_text())
    user, officer = res["appKeyVaultSecretsUser"], res["deployerKeyVaultSecretsOfficer"]
    assert text(body(user).get("scope")) == "keyVault" and text(body(officer).get("scope")) == "keyVault"
    assert "roleIds.keyVaultSecretsUser" in text(inner(user)["roleDefinitionId"])
    assert text(inner(user)["principalId"]) == "appPrincipalId"
    assert condition(user) == ""
    assert "roleIds.keyVaultSecretsOfficer" in text(inner(officer)["roleDefinitionId"])
    assert text(inner(officer)["principalId"]) == "deployerPrincipalId"
    assert condition(officer) == "(!empty(deployerPrincipalId))"
    role_ids = {
        k: text(v).strip("'") for k, v in properties(_variables(parse(RBAC.read_text()))["roleIds"]).items()
    }
    for role in ("keyVaultSecretsUser", "keyVaultSecretsOfficer"):
        assert role_ids[role] == ROLE_IDS[role]
    # azd passes its signed-in principal as AZURE_PRINCIPAL_ID; no output may overwrite it.
    assert "readEnvironmentVariable('AZURE_PRINCIPAL_ID'" in PARAM_FILE.read_text()
    outputs = {d.name for d in declarations(parse(MAIN.read_text()), "output_declaration")}
    assert "AZURE_PRINCIPAL_ID" not in outputs and "AZURE_APP_PRINCIPAL_ID" in outputs
    assert {"AZURE_KEY_VAULT_NAME", "AZURE_KEY_VAULT_SECRET_NAMES"} <= outputs


def test_hash_keys_are_version_less_key_vault_references_resolved_by_the_app_identity() -> None:
    settings = app_settings(FUNCTION_APP.read_text())
    for name in ("ERASURE_HASH_KEY", "TELEMETRY_HASH_KEY"):
        assert KEY_VAULT_REFERENCE.match(settings.get(name, "")), f"{name}: {settings.get(name)!r}"
        assert "SecretVersion" not in settings[name]
    site = resources(FUNCTION_APP.read_text())["site"]
    assert text(inner(site).get("keyVaultReferenceIdentity")) == "identityId"
    main = MAIN.read_text()
    assert re.search(r"keyVaultName:\s*keyVault\.outputs\.name", main)
    secret_names = {text(v).strip("'") for v in properties(_variables(parse(main))["secretNames"]).values()}
    assert secret_names == {"erasure-hash-key", "telemetry-hash-key"}
    # The references can fail: a pinned version or a value is refused.
    assert not KEY_VAULT_REFERENCE.match("'@Microsoft.KeyVault(VaultName=v;SecretName=s;SecretVersion=1)'")
    assert not KEY_VAULT_REFERENCE.match("'0123456789abcdef'")


def test_negative_vault_and_secret_checkers_fail() -> None:
    bad = """
resource v 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: 'x'
  properties: {
    enableRbacAuthorization: false
    accessPolicies: []
  }
}
resource s 'Microsoft.KeyVault/vaults/secrets@2024-11-01' = {
  parent: v
  name: 'erasure-hash-key'
  properties: {
    value: 'abc'
  }
}
"""
    problems = vault_problems(bad)
    assert any("enableRbacAuthorization" in p for p in problems)
    assert any("enablePurgeProtection" in p for p in problems)
    assert any("access policies" in p for p in problems)
    assert secret_resources(bad) == ["s: Microsoft.KeyVault/vaults/secrets@2024-11-01"]


# --------------------------------------------------------------------------- item 1: secrets only if absent


def test_postprovision_hook_creates_secrets_in_both_variants() -> None:
    hook = azd_hook(AZURE_YAML.read_text(), "postprovision")
    assert hook.get("posix") == {"shell": "sh", "run": "./scripts/deploy.sh ensure-secrets"}, hook
    assert hook.get("windows") == {"shell": "pwsh", "run": "./scripts/hooks/ensure-secrets.ps1"}, hook
    ps1 = (HOOKS / "ensure-secrets.ps1").read_text().split("function Confirm-Secret", 1)[1]
    show, not_found, put = ps1.index("secret show"), ps1.index("SecretNotFound"), ps1.index("secret set")
    assert show < not_found < put, "the Windows hook must create a secret only after SecretNotFound"
    assert "RandomNumberGenerator]::GetBytes(32)" in ps1 and "--file" in ps1
    assert "ObjectIsDeletedButRecoverable" in ps1


AZ_STUB = r"""
calls=$(mktemp)
openssl() { head -c 32 /dev/urandom | base64; }
sleep() { :; }
az() {
  echo "az $*" >>"$calls"
  case "$*" in
    *"secret show"*) show "$@" ;;
    *"secret set"*)
      local f; f=$(printf '%s\n' "$@" | grep -A1 -x -- --file | tail -1)
      echo "value-bytes $(base64 -d <"$f" | wc -c) chars $(wc -c <"$f")" >>"$calls"
      set_secret ;;
    *"functionapp restart"*) return 0 ;;
  esac
}
set_secret() { return 0; }
"""


def test_an_existing_secret_is_never_rewritten() -> None:
    result = run_sourced(
        AZ_STUB
        + """
show() { echo "https://v/secrets/x"; }
AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES="a b" cmd_ensure_secrets; echo "rc=$?"
cat "$calls"
"""
    )
    assert "rc=0" in result.stdout, result.stderr
    assert "secret set" not in result.stdout and result.stdout.count("secret show") == 2
    assert "secret a in v: exists" in result.stderr and "restarting" not in result.stderr


def test_an_absent_secret_is_created_once_with_32_random_bytes_off_the_command_line() -> None:
    result = run_sourced(
        AZ_STUB
        + """
show() {
  echo "ERROR: (SecretNotFound) A secret with (name/id) x was not found in this key vault." >&2
  return 3
}
AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES="erasure-hash-key telemetry-hash-key" \\
  AZURE_FUNCTION_APP_NAME=f AZURE_RESOURCE_GROUP=g cmd_ensure_secrets; echo "rc=$?"
cat "$calls"
"""
    )
    assert "rc=0" in result.stdout, result.stderr
    assert result.stdout.count("secret set") == 2
    assert result.stdout.count("value-bytes 32 chars 44") == 2, result.stdout  # base64, no newline
    assert "functionapp restart --resource-group g --name f" in result.stdout
    for line in result.stdout.splitlines():
        if "secret set" in line:
            assert "--value" not in line and "--file" in line


def test_a_transient_error_is_retried_and_never_taken_for_absent() -> None:
    # 403 twice (role propagating), then the secret is there: never set.
    result = run_sourced(
        AZ_STUB
        + """
# each `az` runs in a command substitution (a subshell): count in a file
show() {
  echo x >>"$calls.n"
  [ "$(wc -l <"$calls.n")" -gt 2 ] && return 0
  echo "ERROR: (Forbidden) Caller is not authorized" >&2
  return 1
}
RETRY_ATTEMPTS=5 AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES=a cmd_ensure_secrets; echo "rc=$?"
cat "$calls"
"""
    )
    assert "rc=0" in result.stdout and "secret set" not in result.stdout, result.stdout + result.stderr
    assert "waiting for role assignments to propagate (attempt 3/5" in result.stderr
    # Always forbidden: a clear error naming the role, bounded.
    denied = run_sourced(
        AZ_STUB
        + """
show() { echo "ERROR: (Forbidden)" >&2; return 1; }
RETRY_ATTEMPTS=3 AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES=a cmd_ensure_secrets; echo "rc=$?"
"""
    )
    assert "rc=1" in denied.stdout and "Key Vault Secrets Officer" in denied.stderr
    assert "giving up after 3/3" in denied.stderr


def test_a_deleted_secret_is_reported_not_replaced() -> None:
    result = run_sourced(
        AZ_STUB
        + """
show() { echo "(SecretNotFound)" >&2; return 3; }
set_secret() {
  echo "(ObjectIsDeletedButRecoverable) Secret a is currently in a deleted but recoverable state" >&2
  return 1
}
AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES=a cmd_ensure_secrets; echo "rc=$?"
cat "$calls"
"""
    )
    assert "rc=1" in result.stdout
    assert "az keyvault secret recover --vault-name v --name a" in result.stderr
    assert result.stdout.count("secret set") == 1, "a deleted secret must not be retried"


def test_a_failed_key_generation_never_stores_an_empty_value() -> None:
    result = run_sourced(
        AZ_STUB
        + """
openssl() { return 1; }
show() { echo "(SecretNotFound)" >&2; return 3; }
RETRY_ATTEMPTS=2 AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES=a cmd_ensure_secrets; echo "rc=$?"
cat "$calls"
"""
    )
    assert "rc=1" in result.stdout and "secret set" not in result.stdout, result.stdout + result.stderr
    assert "could not generate a 32-byte key" in result.stderr


def test_an_app_identity_left_as_the_deployer_is_refused() -> None:
    result = run_sourced(
        AZ_STUB
        + """
show() { return 0; }
AZURE_PRINCIPAL_ID=app AZURE_APP_PRINCIPAL_ID=app AZURE_KEY_VAULT_NAME=v AZURE_KEY_VAULT_SECRET_NAMES=a \\
  cmd_ensure_secrets; echo "rc=$?"
"""
    )
    assert "rc=1" in result.stdout and "azd env set AZURE_PRINCIPAL_ID" in result.stderr, result.stderr


def test_ensure_secrets_without_outputs_says_provision_first() -> None:
    result = run_sourced('unset AZURE_KEY_VAULT_NAME; cmd_ensure_secrets; echo "rc=$?"')
    assert "rc=1" in result.stdout and "provision first" in result.stderr


# --------------------------------------------------------------------------- item 2: parked batch retention


def test_parked_batches_are_deleted_by_a_lifecycle_rule() -> None:
    assert lifecycle_problems(STORAGE.read_text()) == []
    storage_params = {
        d.name: d.node for d in declarations(parse(STORAGE.read_text()), "parameter_declaration")
    }
    assert text(storage_params["parkedBatchRetentionDays"].named_children[-1]) == "14"
    assert re.search(r"parkedBatchRetentionDays:\s*parkedBatchRetentionDays", MAIN.read_text())
    assert "14 days" in DEPLOY_DOC.read_text()
    bad = STORAGE.read_text().replace(
        "daysAfterModificationGreaterThan: parkedBatchRetentionDays", "daysAfterModificationGreaterThan: 3650"
    )
    assert any("not the parkedBatchRetentionDays" in p for p in lifecycle_problems(bad))
    assert lifecycle_problems(
        "resource c 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {\n"
        "  name: 'parked-batches'\n}\n"
    ) == ["no lifecycle management policy"]


# --------------------------------------------------------------------------- item 5: checkpoint account


def test_blob_soft_delete_is_off_on_the_checkpoint_account() -> None:
    assert blob_soft_delete_problems(STORAGE.read_text()) == []
    bad = STORAGE.read_text().replace(
        "deleteRetentionPolicy: {\n      enabled: false", "deleteRetentionPolicy: {\n      enabled: true"
    )
    assert len(blob_soft_delete_problems(bad)) == 1


# --------------------------------------------------------------------------- item 6: smaller fixes


def test_event_hubs_zone_redundancy_follows_the_region() -> None:
    for path in BICEP_FILES:
        assert unconditional_zone_redundancy(path.read_text()) == [], path
    eh = resources(EVENT_HUBS.read_text())["namespace"]
    assert text(inner(eh).get("zoneRedundant")) == "zoneRedundant"
    assert re.search(r"zoneRedundant:\s*regionHasZrs", MAIN.read_text())
    assert unconditional_zone_redundancy("var x = {\n  zoneRedundant: true\n}\n")


def test_no_table_service_uri_with_the_durable_task_scheduler() -> None:
    source = FUNCTION_APP.read_text()
    assert table_uri_with_dts_problems(source) == []
    assert "tableServiceUri" not in text(_variables(parse(source))["baseAppSettings"])
    assert "AzureWebJobsStorage__tableServiceUri" in app_settings(source)  # on azureStorage
    uri = "  AzureWebJobsStorage__tableServiceUri: t\n"
    bad = f"var s = {{\n{uri}}}\nvar d = useDts ? {{\n{uri}}} : {{}}\n"
    assert len(table_uri_with_dts_problems(bad)) == 2


def test_operator_gets_data_roles_for_parked_batches_and_the_summary_report() -> None:
    res = resources(RBAC.read_text())
    expected = {
        "operatorBlobDataContributor": ("storage", "roleIds.storageBlobDataContributor"),
        "operatorEventHubSender": ("eventHub", "roleIds.eventHubsDataSender"),
    }
    for name, (scope, role) in expected.items():
        assert condition(res[name]) == "(!empty(operatorPrincipalId))", name
        assert text(body(res[name]).get("scope")) == scope and role in text(
            inner(res[name])["roleDefinitionId"]
        )
        assert text(inner(res[name])["principalId"]) == "operatorPrincipalId"
    reader = res["operatorCosmosDataReader"]
    assert condition(reader) == "(!empty(operatorPrincipalId))"
    assert "cosmosDataReaderRoleId" in text(inner(reader)["roleDefinitionId"])
    variables = _variables(parse(RBAC.read_text()))
    assert text(variables["cosmosDataReaderRoleId"]).strip("'") == COSMOS_DATA_READER
    role_ids = {k: text(v).strip("'") for k, v in properties(variables["roleIds"]).items()}
    assert role_ids["storageBlobDataContributor"] == ROLE_IDS["storageBlobDataContributor"]
    assert "operatorPrincipalId" in PARAM_FILE.read_text()


def test_cosmos_role_assignment_waits_for_the_identity_and_the_script_retries() -> None:
    cosmos = resources(RBAC.read_text())["appCosmosDataContributor"]
    depends = text(body(cosmos).get("dependsOn"))
    for dep in ("appEventHubReceiver", "appBlobDataOwner", "appKeyVaultSecretsUser"):
        assert dep in depends
    stub = """
count=$(mktemp)
az() {
  echo x >>"$count"
  [ "$(wc -l <"$count")" -ge 2 ] && return 0
  echo "$FAILURE" >&2
  return 1
}
sleep() { :; }
"""
    retried = run_sourced(
        stub
        + 'FAILURE="PrincipalNotFound: Principal abc does not exist in the directory"\n'
        + 'deploy_template -g rg; echo "rc=$? calls=$(wc -l <"$count")"'
    )
    assert "rc=0 calls=2" in retried.stdout, retried.stdout + retried.stderr
    other = run_sourced(
        stub + 'FAILURE="InvalidTemplate"\ndeploy_template -g rg; echo "rc=$? calls=$(wc -l <"$count")"'
    )
    assert "rc=1 calls=1" in other.stdout, other.stdout + other.stderr


def test_location_defaults_to_the_resource_group() -> None:
    main_params = {d.name: d.node for d in declarations(parse(MAIN.read_text()), "parameter_declaration")}
    assert text(main_params["location"].named_children[-1]) == "resourceGroup().location"
    assert not re.search(r"(?m)^param location\b", PARAM_FILE.read_text())
    kept = run_sourced(
        """
az() { echo "az $*" >&2; case "$*" in "group show"*) echo westeurope ;; esac; }
sed -n '/local existing_location/,/^  fi/p' scripts/deploy.sh > /tmp/_h19_loc.sh
resource_group=rg AZURE_LOCATION=swedencentral AZURE_ENV_NAME=e; source /tmp/_h19_loc.sh
"""
    )
    assert "exists in westeurope" in kept.stderr and "group create" not in kept.stderr


# --------------------------------------------------------------------------- item 4: providers


def test_providers_are_registered_idempotently() -> None:
    listed = re.search(r"REQUIRED_PROVIDERS=\(\s*([^)]*)\)", (REPO / "scripts" / "deploy.sh").read_text())
    assert listed and tuple(listed.group(1).split()) == PROVIDERS
    stub = """
az() {
  echo "az $*" >&2
  case "$*" in
    "provider show --namespace Microsoft.DurableTask"*) echo NotRegistered ;;
    "provider show"*) echo Registered ;;
    "provider register"*) return "${REGISTER_RC:-0}" ;;
  esac
}
"""
    ok = run_sourced(stub + 'register_providers; echo "rc=$?"')
    assert "rc=0" in ok.stdout
    assert re.findall(r"az provider register --namespace (\S+)", ok.stderr) == ["Microsoft.DurableTask"]
    checked = run_sourced(stub + 'SKIP_PROVIDER_REGISTRATION=1 register_providers; echo "rc=$?"')
    assert "rc=1" in checked.stdout and "az provider register" not in checked.stderr.replace(
        "  az provider register", ""
    )
    assert "  az provider register --namespace Microsoft.DurableTask --wait" in checked.stderr
    refused = run_sourced(stub + 'REGISTER_RC=1 register_providers; echo "rc=$?"')
    assert "rc=1" in refused.stdout and "someone with rights on the subscription" in refused.stderr


# --------------------------------------------------------------------------- item 8: docs/deploy.md


def test_deploy_doc_names_containers_providers_roles_and_retention() -> None:
    doc = DEPLOY_DOC.read_text()
    for name in (
        "actions",
        "deadletters",
        "summaries",
        "erasures",
        "parked-batches",
        "summary-exports",
        "outbox-reminders",
    ):
        assert f"`{name}`" in doc, name
    for provider in PROVIDERS:
        assert f"`{provider}`" in doc or provider in doc, provider
    assert "az provider register --namespace" in doc
    for phrase in (
        "Key Vault Secrets User",
        "Key Vault Secrets Officer",
        "deployerPrincipalId",
        "operatorPrincipalId",
        "keyVaultReferenceIdentity",
        "purge protection",
        "StorageServiceUriOptions.cs",
        "HostAzureTableStorageProvider.cs",
        "soft delete",
        "0.36.177",
    ):
        assert phrase in doc, phrase
    # The host uses the service URIs first; the old claim must be gone.
    assert "prefers `accountName` over" not in doc
    # Every role assigned in rbac.bicep is in the doc's table.
    for role in (
        "Storage Blob Data Contributor",
        "Cosmos DB Built-in Data Reader",
        "Azure Event Hubs Data Sender",
    ):
        assert role in doc

"""Offline checks of bicep/ with a real Bicep parser (tree-sitter-bicep).

No Bicep CLI or Azure is reachable where this project is built, so these
tests parse every template and enforce the project's IaC rules on the syntax
tree: parameters documented, no secrets in outputs or app settings, role
assignments well formed, every setting the code reads (shared.config
AZURE_SETTINGS) provided, names derived from uniqueString. Each checker is a
plain function returning a list of problems, and the negative tests at the end
feed it a small bad snippet to prove it can fail.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_bicep

pytestmark = pytest.mark.iac

REPO = Path(__file__).resolve().parents[2]
BICEP = REPO / "bicep"
MAIN = BICEP / "main.bicep"
PARAM_FILE = BICEP / "main.bicepparam"
FUNCTION_APP = BICEP / "modules" / "functionapp.bicep"
BICEP_FILES = sorted(BICEP.rglob("*.bicep"))

if str(REPO) not in sys.path:  # `from shared import config` needs the repo root
    sys.path.insert(0, str(REPO))

Node = tree_sitter.Node

# Functions that return keys, SAS tokens or connection strings.
SECRET_FUNCTION = re.compile(r"^list[A-Z]\w*$")
SECRET_NAME = re.compile(r"password|secret|token|key|connectionstring|sas", re.IGNORECASE)
SECRET_VALUE = re.compile(
    r"AccountKey=|SharedAccessKey|SharedAccessSignature|primaryKey|secondaryKey|"
    r"primaryMasterKey|ConnectionString|\blist[A-Z]\w*\(",
)
# The one connection string the app may carry: not a secret once the component
# has local auth disabled (ingestion then needs an Entra token).
ALLOWED_CONNECTION_STRING_SETTINGS = {"APPLICATIONINSIGHTS_CONNECTION_STRING"}
ROLE_ASSIGNMENT_TYPE = "Microsoft.Authorization/roleAssignments@"
# An App Service Key Vault reference to the latest version of a secret (no
# SecretVersion, so a rotation is picked up): the value lives in the vault.
KEY_VAULT_REFERENCE = re.compile(
    r"^'@Microsoft\.KeyVault\((?:VaultName=[^;()']+;SecretName=[^;()']+|SecretUri=[^()']+/secrets/[^/()']+/?)\)'$"
)
# Settings the templates provide in an equivalent form. The host storage is
# addressed by its service URIs (from the account's primaryEndpoints, right in
# every cloud) instead of AzureWebJobsStorage__accountName, which the Functions
# storage client provider prefers over the URIs and expands to public-cloud hosts.
EQUIVALENT_SETTINGS = {
    "AzureWebJobsStorage__accountName": (
        "AzureWebJobsStorage__blobServiceUri",
        "AzureWebJobsStorage__queueServiceUri",
        "AzureWebJobsStorage__tableServiceUri",
    ),
}
NAME_PREFIXES = {
    "identity": "id-",
    "logAnalytics": "log-",
    "applicationInsights": "appi-",
    "storage": "st",
    "eventHubsNamespace": "evhns-",
    "cosmos": "cosmos-",
    "durableTaskScheduler": "dts-",
    "plan": "plan-",
    "functionApp": "func-",
}


# --------------------------------------------------------------------------- parsing


@cache
def _parser() -> tree_sitter.Parser:
    return tree_sitter.Parser(tree_sitter.Language(tree_sitter_bicep.language()))


def parse(source: str) -> Node:
    return _parser().parse(source.encode()).root_node


def text(node: Node | None) -> str:
    return "" if node is None else (node.text or b"").decode()


def walk(node: Node) -> Iterator[Node]:
    yield node
    for child in node.children:
        yield from walk(child)


def syntax_errors(source: str) -> list[str]:
    """ERROR and MISSING nodes, as 'line:col kind text'."""
    problems = []
    for node in walk(parse(source)):
        if node.type == "ERROR" or node.is_missing:
            kind = "MISSING" if node.is_missing else "ERROR"
            row, col = node.start_point
            problems.append(f"{row + 1}:{col + 1} {kind} {text(node)[:60]!r}")
    return problems


def bicepparam_as_bicep(source: str) -> str:
    """tree-sitter-bicep 1.1.0 parses `using` but not typeless `param x = v`;
    rewrite each assignment as `var x = v` so its expression is still parsed."""
    return re.sub(r"^(\s*)param(\s+\w+\s*=)", r"\1var\2", source, flags=re.MULTILINE)


@dataclass(frozen=True)
class Declaration:
    node: Node
    decorators: tuple[str, ...]  # decorator function names, e.g. ('description', 'secure')

    @property
    def name(self) -> str:
        return text(self.node.named_children[0])


def declarations(root: Node, kind: str) -> list[Declaration]:
    """Top-level declarations of a kind with the decorators written above them."""
    found, pending = [], []
    for child in root.named_children:
        if child.type == "decorators":
            for deco in child.named_children:
                call = next((n for n in deco.named_children if n.type == "call_expression"), None)
                fn = call.named_children[0] if call is not None else deco.named_children[0]
                pending.append(text(fn).split(".")[-1])
            continue
        if child.type == "comment":
            continue
        if child.type == kind:
            found.append(Declaration(child, tuple(pending)))
        pending = []
    return found


def body_object(resource: Node) -> Node | None:
    """The `{...}` body of a resource/module (also under `if (...)` or `[for ...]`)."""
    for child in resource.named_children:
        if child.type == "object":
            return child
        if child.type in ("if_statement", "for_statement"):
            objs = [c for c in child.named_children if c.type == "object"]
            if objs:
                return objs[-1]
    return None


def properties(obj: Node | None) -> dict[str, Node]:
    """Object property key -> value node (keys unquoted)."""
    out: dict[str, Node] = {}
    if obj is None or obj.type != "object":
        return out
    for prop in obj.named_children:
        if prop.type != "object_property" or len(prop.named_children) < 2:
            continue
        key_node, value = prop.named_children[0], prop.named_children[-1]
        key = text(key_node).strip("'")
        out[key] = value
    return out


def resource_type(resource: Node) -> str:
    return text(resource.named_children[1]).strip("'")


def is_existing(resource: Node) -> bool:
    return any(c.type == "existing" or text(c) == "existing" for c in resource.children)


# --------------------------------------------------------------------------- checkers


def params_missing_description(source: str) -> list[str]:
    return [
        f"param {d.name} has no @description"
        for d in declarations(parse(source), "parameter_declaration")
        if "description" not in d.decorators
    ]


def secret_function_calls(source: str) -> list[str]:
    problems = []
    for node in walk(parse(source)):
        if node.type == "call_expression":
            fn = text(node.named_children[0]).split(".")[-1]
            if SECRET_FUNCTION.match(fn):
                problems.append(f"line {node.start_point[0] + 1}: {fn}() returns secrets")
    return problems


def secret_outputs(source: str) -> list[str]:
    root = parse(source)
    secure = {d.name for d in declarations(root, "parameter_declaration") if "secure" in d.decorators}
    problems = []
    for out in declarations(root, "output_declaration"):
        value = out.node.named_children[-1]
        # A resource's name (AZURE_KEY_VAULT_NAME, the secret names) is not a secret.
        if SECRET_NAME.search(out.name) and not re.search(r"(?i)_?names?$", out.name):
            problems.append(f"output {out.name}: name looks like a secret")
        if SECRET_VALUE.search(text(value)):
            problems.append(f"output {out.name}: value looks like a secret: {text(value)[:60]!r}")
        used = {text(n) for n in walk(value) if n.type == "identifier"} & secure
        if used:
            problems.append(f"output {out.name}: exposes @secure() param(s) {sorted(used)}")
    return problems


def role_assignment_problems(source: str) -> list[str]:
    problems = []
    for res in declarations(parse(source), "resource_declaration"):
        rtype = resource_type(res.node)
        if not rtype.startswith(ROLE_ASSIGNMENT_TYPE) or is_existing(res.node):
            continue
        props = properties(body_object(res.node))
        name = text(props.get("name"))
        if not name.startswith("guid("):
            problems.append(f"role assignment {res.name}: name not guid(scope, principal, role): {name!r}")
        elif name.count(",") < 2:
            problems.append(f"role assignment {res.name}: guid() needs scope, principal and role")
        if "scope" not in props:
            problems.append(f"role assignment {res.name}: no scope (would land on the resource group)")
        inner = properties(props.get("properties"))
        if not text(inner.get("principalType")).strip("'"):
            problems.append(f"role assignment {res.name}: principalType not set")
        if "roleDefinitionId" not in inner or "principalId" not in inner:
            problems.append(f"role assignment {res.name}: roleDefinitionId/principalId missing")
    return problems


def _variables(root: Node) -> dict[str, Node]:
    return {d.name: d.node.named_children[-1] for d in declarations(root, "variable_declaration")}


def _collect_settings(
    expr: Node | None, variables: dict[str, Node], out: dict[str, str], seen: set[str]
) -> None:
    """Resolve an app-settings expression (object, variable, union(), a ? b : c)."""
    if expr is None:
        return
    if expr.type == "object":
        for key, value in properties(expr).items():
            out[key] = text(value)
    elif expr.type == "identifier" and text(expr) in variables and text(expr) not in seen:
        seen.add(text(expr))
        _collect_settings(variables[text(expr)], variables, out, seen)
    elif expr.type == "call_expression" and text(expr.named_children[0]) == "union":
        for arg in expr.named_children[1].named_children:
            _collect_settings(arg, variables, out, seen)
    elif expr.type == "ternary_expression":
        for branch in expr.named_children[1:]:
            _collect_settings(branch, variables, out, seen)
    elif expr.type == "parenthesized_expression":
        for child in expr.named_children:
            _collect_settings(child, variables, out, seen)
    elif expr.type == "array":  # siteConfig.appSettings: [{ name: ..., value: ... }]
        for item in expr.named_children:
            props = properties(item)
            if "name" in props:
                out[text(props["name"]).strip("'")] = text(props.get("value"))


def app_settings(source: str) -> dict[str, str]:
    """App setting name -> value expression text, from sites/config 'appsettings'
    resources and siteConfig.appSettings arrays of Microsoft.Web/sites."""
    root = parse(source)
    variables = _variables(root)
    out: dict[str, str] = {}
    for res in declarations(root, "resource_declaration"):
        rtype = resource_type(res.node)
        props = properties(body_object(res.node))
        is_appsettings = text(props.get("name")).strip("'") == "appsettings"
        if rtype.startswith("Microsoft.Web/sites/config@") and is_appsettings:
            _collect_settings(props.get("properties"), variables, out, set())
        elif rtype.startswith("Microsoft.Web/sites@"):
            site_config = properties(properties(props.get("properties")).get("siteConfig"))
            _collect_settings(site_config.get("appSettings"), variables, out, set())
    return out


def app_setting_problems(settings: dict[str, str]) -> list[str]:
    problems = []
    for name, value in settings.items():
        if KEY_VAULT_REFERENCE.match(value):
            continue  # the secret is in the vault, resolved by the platform
        if "key" in name.lower():
            problems.append(f"app setting {name}: key-like setting name")
        if re.search(r"AccountKey=|SharedAccessKey|SharedAccessSignature|sig=|\blist[A-Z]\w*\(|Key\b", value):
            problems.append(f"app setting {name}: key/SAS in value {value[:60]!r}")
        has_connection_string = re.search(r"connectionstring", value, re.IGNORECASE)
        if has_connection_string and name not in ALLOWED_CONNECTION_STRING_SETTINGS:
            problems.append(f"app setting {name}: connection string value {value[:60]!r}")
        if "Endpoint=" in value and "Authentication=ManagedIdentity" not in value:
            problems.append(f"app setting {name}: endpoint string without managed identity auth")
        if name.endswith("__credential") and value.strip("'") != "managedidentity":
            problems.append(f"app setting {name}: credential must be managedidentity")
    return problems


def missing_settings(required: tuple[str, ...], settings: dict[str, str]) -> list[str]:
    """Required setting names neither set nor replaced by their EQUIVALENT_SETTINGS."""
    return [
        name
        for name in required
        if name not in settings
        and not (name in EQUIVALENT_SETTINGS and all(e in settings for e in EQUIVALENT_SETTINGS[name]))
    ]


def naming_problems(source: str) -> list[str]:
    """main.bicep: resourceToken from uniqueString(subscription, RG, env, location);
    every generated name = abbreviation prefix + resourceToken."""
    root = parse(source)
    variables = _variables(root)
    problems = []
    token = text(variables.get("resourceToken"))
    for needed in ("uniqueString(", "subscription().id", "resourceGroup().id", "environmentName", "location"):
        if needed not in token:
            problems.append(f"resourceToken must use {needed!r}, got {token!r}")
    names = properties(variables.get("names"))
    if not names:
        problems.append("no `names` variable with the generated resource names")
    for key, value in names.items():
        if "${resourceToken}" not in text(value):
            problems.append(f"names.{key} does not derive from resourceToken: {text(value)!r}")
        prefix = NAME_PREFIXES.get(key)
        if prefix and not text(value).strip("'").startswith(prefix):
            problems.append(f"names.{key} should start with {prefix!r}: {text(value)!r}")
    return problems


def module_naming_problems(source: str) -> list[str]:
    """In a module, every top-level resource it creates takes its name from a
    parameter (so main.bicep's uniqueString names flow through); children,
    role assignments and guid-named resources are exempt."""
    root = parse(source)
    params = {d.name for d in declarations(root, "parameter_declaration")}
    problems = []
    for res in declarations(root, "resource_declaration"):
        props = properties(body_object(res.node))
        rtype = resource_type(res.node)
        if is_existing(res.node) or "parent" in props or rtype.count("/") > 1:
            continue
        if rtype.startswith("Microsoft.Authorization/"):  # checked by role_assignment_problems
            continue
        name = text(props.get("name"))
        if name.startswith("guid(") or name in params:
            continue
        problems.append(f"resource {res.name} ({rtype}): name {name!r} is not a parameter or guid()")
    return problems


def tag_problems(source: str) -> list[str]:
    root = parse(source)
    problems = []
    for res in declarations(root, "resource_declaration"):
        props = properties(body_object(res.node))
        rtype = resource_type(res.node)
        if is_existing(res.node) or "parent" in props or rtype.count("/") > 1:
            continue
        if rtype.startswith(("Microsoft.Authorization/", "Microsoft.DocumentDB/databaseAccounts/")):
            continue
        if "tags" not in props:
            problems.append(f"resource {res.name} ({rtype}) has no tags")
    return problems


def unused_declarations(source: str) -> list[str]:
    """Params and vars never referenced (mirrors the no-unused-params/vars linter rules)."""
    root = parse(source)
    used: dict[str, int] = {}
    for node in walk(root):
        if node.type == "identifier":
            used[text(node)] = used.get(text(node), 0) + 1
    problems = []
    for kind, label in (("parameter_declaration", "param"), ("variable_declaration", "var")):
        for d in declarations(root, kind):
            if used.get(d.name, 0) < 2:  # the declaration itself is one occurrence
                problems.append(f"{label} {d.name} is never used")
    return problems


def preview_api_versions(source: str) -> list[str]:
    problems = []
    for res in declarations(parse(source), "resource_declaration"):
        if "-preview" in resource_type(res.node):
            problems.append(f"resource {res.name} uses a preview API: {resource_type(res.node)}")
    return problems


def bicepparam_problems(param_source: str, main_source: str) -> list[str]:
    problems = [f"main.bicepparam {e}" for e in syntax_errors(bicepparam_as_bicep(param_source))]
    using = re.search(r"^using\s+'([^']+)'", param_source, re.MULTILINE)
    if not using or using.group(1) != "./main.bicep":
        problems.append("main.bicepparam must start with using './main.bicep'")
    declared = {}
    for d in declarations(parse(main_source), "parameter_declaration"):
        has_default = len(d.node.named_children) > 2  # identifier, type, default
        declared[d.name] = has_default
    assigned = set(re.findall(r"^param\s+(\w+)\s*=", param_source, re.MULTILINE))
    for name in sorted(assigned - declared.keys()):
        problems.append(f"main.bicepparam sets unknown param {name}")
    for name in sorted(n for n, has_default in declared.items() if not has_default and n not in assigned):
        problems.append(f"main.bicepparam misses required param {name}")
    return problems


# --------------------------------------------------------------------------- tests on the real templates


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def test_expected_files_exist() -> None:
    for path in (MAIN, PARAM_FILE, BICEP / "bicepconfig.json", BICEP / ".checkov.yaml", REPO / "azure.yaml"):
        assert path.is_file(), f"missing {_rel(path)}"
    assert len(BICEP_FILES) >= 8, "expected main.bicep plus one module per concern"


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_bicep_parses_without_errors(path: Path) -> None:
    assert syntax_errors(path.read_text()) == []


def test_bicepparam_parses_and_matches_main() -> None:
    assert bicepparam_problems(PARAM_FILE.read_text(), MAIN.read_text()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_every_param_has_description(path: Path) -> None:
    assert params_missing_description(path.read_text()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_no_unused_params_or_vars(path: Path) -> None:
    assert unused_declarations(path.read_text()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_no_secret_functions_or_outputs(path: Path) -> None:
    source = path.read_text()
    assert secret_function_calls(source) == []
    assert secret_outputs(source) == []


def test_no_list_keys_anywhere_in_bicep_dir() -> None:
    # Belt and braces: also catches a listKeys() inside a string or comment.
    pattern = re.compile(r"listKeys|listConnectionStrings")
    hits = [_rel(p) for p in BICEP.rglob("*") if p.is_file() and pattern.search(p.read_text())]
    assert hits == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_role_assignments_well_formed(path: Path) -> None:
    assert role_assignment_problems(path.read_text()) == []


def test_role_assignments_exist_with_expected_roles() -> None:
    rbac = (BICEP / "modules" / "rbac.bicep").read_text()
    for role_id, role in {
        "a638d3c7-ab3a-418d-83e6-5f17a39d4fde": "Azure Event Hubs Data Receiver",
        "2b629674-e913-4c01-ae53-ef4638d8f975": "Azure Event Hubs Data Sender",
        "b7e6dc6d-f1e8-4753-8033-0f276bb0955b": "Storage Blob Data Owner",
        "974c5e8b-45b9-4653-ba55-5f855dd0fb88": "Storage Queue Data Contributor",
        "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3": "Storage Table Data Contributor",
        "3913510d-42f4-4e42-8a64-420c390055eb": "Monitoring Metrics Publisher",
        "0ad04412-c4d5-4796-b79c-f76d14c8d402": "Durable Task Data Contributor",
        "00000000-0000-0000-0000-000000000002": "Cosmos DB Built-in Data Contributor",
    }.items():
        assert role_id in rbac, f"{role} ({role_id}) not granted in rbac.bicep"
    assert "sqlRoleAssignments@" in rbac


def test_every_azure_setting_is_set_by_the_templates() -> None:
    from shared import config

    settings = app_settings(FUNCTION_APP.read_text())
    missing = missing_settings(config.AZURE_SETTINGS, settings)
    assert missing == [], f"shared.config.AZURE_SETTINGS not set in {_rel(FUNCTION_APP)}: {missing}"


def test_app_settings_are_identity_based() -> None:
    settings = app_settings(FUNCTION_APP.read_text())
    assert settings, "no app settings found"
    assert app_setting_problems(settings) == []
    assert "APPLICATIONINSIGHTS_AUTHENTICATION_STRING" in settings
    assert "Authorization=AAD" in settings["APPLICATIONINSIGHTS_AUTHENTICATION_STRING"]


def test_durable_task_scheduler_settings() -> None:
    settings = app_settings(FUNCTION_APP.read_text())
    provider = settings.get("AzureFunctionsJobHost__extensions__durableTask__storageProvider__type")
    assert provider == "'azureManaged'"
    dts = settings.get("DURABLE_TASK_SCHEDULER_CONNECTION_STRING", "")
    assert "Authentication=ManagedIdentity" in dts and "ClientID=" in dts


def test_resource_names_derive_from_unique_string() -> None:
    assert naming_problems(MAIN.read_text()) == []


@pytest.mark.parametrize("path", sorted((BICEP / "modules").glob("*.bicep")), ids=_rel)
def test_module_resources_are_named_by_parameters(path: Path) -> None:
    assert module_naming_problems(path.read_text()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_resources_are_tagged_and_use_stable_apis(path: Path) -> None:
    source = path.read_text()
    assert tag_problems(source) == []
    assert preview_api_versions(source) == []


def test_function_app_is_flex_python_311_with_azd_tag() -> None:
    source = FUNCTION_APP.read_text()
    for needed in (
        "'FC1'",
        "'FlexConsumption'",
        "name: 'python'",
        "version: '3.11'",
        "'azd-service-name': serviceName",
        "type: 'UserAssignedIdentity'",
        "instanceMemoryMB: instanceMemoryMB",
        "name: 'durable'",
    ):
        assert needed in source, f"{needed} not found in functionapp.bicep"
    assert "'azd-env-name': environmentName" in MAIN.read_text()


def test_local_auth_disabled_everywhere() -> None:
    modules = BICEP / "modules"
    assert "disableLocalAuth: true" in (modules / "eventhubs.bicep").read_text()
    assert "disableLocalAuth: true" in (modules / "cosmos.bicep").read_text()
    assert "DisableLocalAuth: true" in (modules / "monitoring.bicep").read_text()
    storage = (modules / "storage.bicep").read_text()
    for needed in (
        "allowSharedKeyAccess: false",
        "allowBlobPublicAccess: false",
        "minimumTlsVersion: 'TLS1_2'",
        "supportsHttpsTrafficOnly: true",
    ):
        assert needed in storage


# --------------------------------------------------------------------------- the checkers can fail

BAD = """
param noDoc string
@secure()
@description('a secret')
param adminPassword string
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  name: 'hardcoded'
  location: 'westeurope'
}
resource ra 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: 'fixed-name'
  properties: {
    roleDefinitionId: 'x'
    principalId: 'y'
  }
}
resource old 'Microsoft.Foo/bars@2020-01-01-preview' = {
  name: noDoc
  tags: {}
}
output storageKey string = st.listKeys().keys[0].value
output leaked string = 'pw=${adminPassword}'
"""


def test_negative_syntax_error_is_reported() -> None:
    assert syntax_errors("resource x 'Microsoft.Foo/bars@2020-01-01' = {\n  name: 'a'\n")
    assert syntax_errors("param = 3\n")
    assert syntax_errors(bicepparam_as_bicep("using './main.bicep'\nparam x = \n"))


def test_negative_checkers_report_bad_snippet() -> None:
    assert params_missing_description(BAD) == ["param noDoc has no @description"]
    assert any("listKeys" in p for p in secret_function_calls(BAD))
    outputs = secret_outputs(BAD)
    assert any("storageKey" in p and "name" in p for p in outputs)
    assert any("leaked" in p and "adminPassword" in p for p in outputs)
    roles = role_assignment_problems(BAD)
    assert any("guid" in r for r in roles)
    assert any("principalType" in r for r in roles)
    assert any("no scope" in r for r in roles)
    assert module_naming_problems(BAD) == [
        "resource st (Microsoft.Storage/storageAccounts@2025-06-01): "
        "name \"'hardcoded'\" is not a parameter or guid()"
    ]
    assert tag_problems(BAD) == ["resource st (Microsoft.Storage/storageAccounts@2025-06-01) has no tags"]
    assert preview_api_versions(BAD) == [
        "resource old uses a preview API: Microsoft.Foo/bars@2020-01-01-preview"
    ]
    assert unused_declarations(BAD + "var spare = 1\n") == ["var spare is never used"]


def test_negative_app_settings_with_keys_are_reported() -> None:
    bad_app = """
var base = {
  AzureWebJobsStorage: 'DefaultEndpointsProtocol=https;AccountName=x;AccountKey=abc'
  EventHubConnection: 'Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b'
  COSMOS_KEY: cosmos.listKeys().primaryMasterKey
  AzureWebJobsStorage__credential: 'connectionstring'
}
resource cfg 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: site
  name: 'appsettings'
  properties: union(base, {})
}
"""
    settings = app_settings(bad_app)
    assert set(settings) == {
        "AzureWebJobsStorage",
        "EventHubConnection",
        "COSMOS_KEY",
        "AzureWebJobsStorage__credential",
    }
    problems = app_setting_problems(settings)
    for name in settings:
        assert any(name in p for p in problems), f"{name} not reported: {problems}"
    from shared import config

    assert missing_settings(config.AZURE_SETTINGS, settings), "missing-settings check cannot fail"
    partial = {"AzureWebJobsStorage__blobServiceUri": "x", "AzureWebJobsStorage__queueServiceUri": "y"}
    assert missing_settings(("AzureWebJobsStorage__accountName",), partial) == [
        "AzureWebJobsStorage__accountName"
    ]


def test_negative_naming_and_bicepparam_are_reported() -> None:
    bad_main = """
@description('env')
param environmentName string
@description('required')
param required string
var resourceToken = toLower(environmentName)
var names = {
  storage: 'mystorage'
  functionApp: 'app-${resourceToken}'
}
"""
    problems = naming_problems(bad_main)
    assert any("uniqueString(" in p for p in problems)
    assert any("names.storage" in p for p in problems)
    assert any("names.functionApp should start with 'func-'" in p for p in problems)
    param_problems = bicepparam_problems("using './other.bicep'\nparam unknown = 1\n", bad_main)
    assert any("using './main.bicep'" in p for p in param_problems)
    assert any("unknown param unknown" in p for p in param_problems)
    assert any("misses required param required" in p for p in param_problems)


# --------------------------------------------------------------------------- azd and the deploy script


def test_azure_yaml_points_azd_at_bicep_and_the_api_service() -> None:
    azure_yaml = (REPO / "azure.yaml").read_text()
    for pattern in (
        r"(?m)^infra:\s*\n(\s+.*\n)*?\s+path:\s*bicep\s*$",
        r"(?m)^\s+provider:\s*bicep\s*$",
        r"(?m)^services:\s*\n\s+api:\s*$",
        r"(?m)^\s+project:\s*\.\s*$",
        r"(?m)^\s+language:\s*python\s*$",
        r"(?m)^\s+host:\s*function\s*$",
    ):
        assert re.search(pattern, azure_yaml), f"azure.yaml does not match {pattern!r}"


def test_deploy_script_is_strict_bash_using_az() -> None:
    import shutil
    import subprocess

    script = REPO / "scripts" / "deploy.sh"
    source = script.read_text()
    assert source.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in source
    for needed in (
        "az group create",
        "az deployment group create",
        "--template-file bicep/main.bicep",
        "--parameters bicep/main.bicepparam",
        "az functionapp deployment source config-zip",
        "-m scripts.send_events --namespace",
    ):
        assert needed in source, f"deploy.sh lacks {needed!r}"
    bash = shutil.which("bash")
    assert bash, "bash not found"
    syntax = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, check=False)
    assert syntax.returncode == 0, syntax.stderr


def test_the_signal_path_follows_the_durable_backend() -> None:
    """docs/performance.md, "Signals": a delivery orchestration per batch on the Durable Task
    Scheduler (capacity billed), one client signal per player on Azure Storage (where the
    orchestration's storage transactions cost more than the worker CPU it saves)."""
    import re

    from shared.config import SIGNAL_PATHS

    text = FUNCTION_APP.read_text(encoding="utf-8")
    m = re.search(r"^\s*SIGNAL_PATH: useDts \? '(\w+)' : '(\w+)'\s*$", text, flags=re.MULTILINE)
    assert m, "functionapp.bicep must set SIGNAL_PATH from the backend"
    assert m.groups() == ("orchestration", "client") and set(m.groups()) <= set(SIGNAL_PATHS)

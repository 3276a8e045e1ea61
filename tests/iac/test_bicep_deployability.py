"""Checks that keep the templates deployable beyond the happy path (operator review).

Each finding of the review has a checker here, run on the real templates and on
a small bad snippet (so it can fail), parsed with tree-sitter-bicep through the
helpers of test_bicep_structure:

- host storage SKU chosen from the region (no hard-coded Standard_ZRS, which
  fails in Flex regions without zone-redundant storage);
- no cloud-specific host names in any .bicep string, descriptions included
  (`no-hardcoded-env-urls` is an error in bicepconfig.json and, before Bicep
  0.38.3, also fires on descriptions), and a documented minimum Bicep version;
- host storage reached through the service URIs of the account's
  primaryEndpoints, not AzureWebJobsStorage__accountName (public-cloud only);
- producerPrincipalType a real parameter, not pinned to 'User';
- outputs of conditional modules read with safe access;
- Event Hubs throughput units within the documented 0-20 for Standard.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from test_bicep_structure import (
    BICEP,
    BICEP_FILES,
    FUNCTION_APP,
    MAIN,
    PARAM_FILE,
    REPO,
    Node,
    _rel,
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

pytestmark = pytest.mark.iac

STORAGE = BICEP / "modules" / "storage.bicep"
EVENT_HUBS = BICEP / "modules" / "eventhubs.bicep"
RBAC = BICEP / "modules" / "rbac.bicep"
DEPLOY_DOC = REPO / "docs" / "deploy.md"

# DNS suffixes that differ between Azure clouds: the default disallowed hosts of
# Bicep's no-hardcoded-env-urls rule plus the service suffixes this project's
# resources use. None may appear in a .bicep string; values come from the
# resources (primaryEndpoints, serviceBusEndpoint, ...) or environment().
CLOUD_HOST_SUFFIXES = (
    "windows.net",  # core.windows.net, servicebus.windows.net, database.windows.net, ...
    "azure.com",  # management.azure.com, documents.azure.com, gallery.azure.com, ...
    "azure.net",  # vault.azure.net, datalake.azure.net, ...
    "azure.us",
    "microsoftonline.com",
    "loganalytics.io",
    "trafficmanager.net",
    "azuredatalakestore.net",
    "azuredatalakeanalytics.net",
    "azurecr.io",
    "azurewebsites.net",
    "durabletask.io",
    "chinacloudapi.cn",
    "usgovcloudapi.net",
)
CLOUD_HOST = re.compile(r"(?i)\b(?:" + "|".join(re.escape(s) for s in CLOUD_HOST_SUFFIXES) + r")\b")

# Flex Consumption regions without zone-redundant storage named in the review:
# a Standard_ZRS account fails to deploy there.
REGIONS_WITHOUT_ZRS = (
    "westus",
    "northcentralus",
    "westcentralus",
    "ukwest",
    "southindia",
    "australiasoutheast",
)
# Standard (not Premium) Event Hubs: sku.capacity and maximumThroughputUnits are 0-20.
STANDARD_MAX_THROUGHPUT_UNITS = 20
# What azd 1.10.0 (the minimum azd) bundles: the templates use nothing newer (no `.?`,
# no cloud host in any string, so the pre-0.38.3 no-hardcoded-env-urls behaviour passes).
MIN_BICEP_VERSION = (0, 29, 47)
STORAGE_URI_SETTINGS = (
    "AzureWebJobsStorage__blobServiceUri",
    "AzureWebJobsStorage__queueServiceUri",
    "AzureWebJobsStorage__tableServiceUri",
)


# --------------------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Param:
    decorators: dict[str, str]  # decorator name -> argument text, e.g. {'maxValue': '20'}
    default: Node | None


def parameters(source: str) -> dict[str, Param]:
    """Top-level params with their decorators' arguments and default value."""
    out: dict[str, Param] = {}
    pending: dict[str, str] = {}
    for child in parse(source).named_children:
        if child.type == "decorators":
            for deco in child.named_children:
                call = next((n for n in deco.named_children if n.type == "call_expression"), None)
                if call is None:
                    continue
                args = call.named_children[1] if len(call.named_children) > 1 else None
                pending[text(call.named_children[0]).split(".")[-1]] = text(args)[1:-1].strip()
            continue
        if child.type == "comment":
            continue
        if child.type == "parameter_declaration":
            kids = child.named_children
            out[text(kids[0])] = Param(dict(pending), kids[2] if len(kids) > 2 else None)
        pending = {}
    return out


def outputs(source: str) -> dict[str, str]:
    return {
        d.name: text(d.node.named_children[-1]) for d in declarations(parse(source), "output_declaration")
    }


def module_params(source: str, module: str) -> dict[str, str]:
    """params of one module declaration in main.bicep: name -> value text."""
    for mod in declarations(parse(source), "module_declaration"):
        if mod.name == module:
            return {
                k: text(v) for k, v in properties(properties(body_object(mod.node)).get("params")).items()
            }
    raise AssertionError(f"module {module} not found")


def expression_closure(expr: Node, variables: dict[str, Node]) -> str:
    """The text of an expression and of every variable it uses, transitively."""
    texts, seen, todo = [], set(), [expr]
    while todo:
        node = todo.pop()
        texts.append(text(node))
        for ident in walk(node):
            name = text(ident)
            if ident.type == "identifier" and name in variables and name not in seen:
                seen.add(name)
                todo.append(variables[name])
    return "\n".join(texts)


def string_list(node: Node | None) -> list[str]:
    return [text(item).strip("'") for item in (node.named_children if node is not None else [])]


# --------------------------------------------------------------------------- checkers


def cloud_hosts_in_strings(source: str) -> list[str]:
    """Every string (descriptions, values, interpolations) naming a cloud-specific host."""
    problems = []
    for node in walk(parse(source)):
        if node.type == "string":
            found = CLOUD_HOST.search(text(node))
            if found:
                problems.append(f"line {node.start_point[0] + 1}: {found.group(0)!r} in {text(node)[:70]!r}")
    return problems


def hardcoded_zrs(source: str) -> list[str]:
    """A Standard_ZRS param default or a literal Standard_ZRS sku.name."""
    problems = []
    for name, param in parameters(source).items():
        if text(param.default) == "'Standard_ZRS'":
            problems.append(f"param {name} defaults to 'Standard_ZRS'")
    for res in declarations(parse(source), "resource_declaration"):
        sku_name = properties(properties(body_object(res.node)).get("sku")).get("name")
        if text(sku_name) == "'Standard_ZRS'":
            problems.append(f"resource {res.name}: sku.name is hard-coded 'Standard_ZRS'")
    return problems


def storage_sku_problems(main_source: str, storage_source: str) -> list[str]:
    """storage.bicep takes its SKU from a parameter without default; main.bicep passes one
    derived from `location` (ZRS or LRS) with an override parameter."""
    problems = hardcoded_zrs(main_source) + hardcoded_zrs(storage_source)
    sku_param = parameters(storage_source).get("skuName")
    if sku_param is None:
        problems.append("storage.bicep has no skuName parameter")
    elif sku_param.default is not None:
        problems.append(
            f"storage.bicep skuName has a default ({text(sku_param.default)}): main.bicep must choose"
        )
    for res in declarations(parse(storage_source), "resource_declaration"):
        if resource_type(res.node).startswith("Microsoft.Storage/storageAccounts@") and not is_existing(
            res.node
        ):
            sku_name = text(properties(properties(body_object(res.node)).get("sku")).get("name"))
            if sku_name != "skuName":
                problems.append(
                    f"storage account {res.name}: sku.name is {sku_name!r}, not the skuName param"
                )
    root = parse(main_source)
    storage_module = next((m for m in declarations(root, "module_declaration") if m.name == "storage"), None)
    passed = properties(properties(body_object(storage_module.node)).get("params")) if storage_module else {}
    if "skuName" not in passed:
        return problems + ["main.bicep does not pass skuName to the storage module"]
    closure = expression_closure(passed["skuName"], _variables(root))
    if not re.search(r"\blocation\b", closure):
        problems.append(f"storage skuName does not depend on location: {closure!r}")
    for sku in ("'Standard_ZRS'", "'Standard_LRS'"):
        if sku not in closure:
            problems.append(f"storage skuName never chooses {sku}")
    overrides = [
        name
        for name, param in parameters(main_source).items()
        if "'Standard_ZRS'" in param.decorators.get("allowed", "")
        and text(param.default) == "''"
        and re.search(rf"\b{name}\b", closure)
    ]
    if not overrides:
        problems.append("no override parameter (allowed SKUs, default '') feeds the storage skuName")
    return problems


def conditional_module_output_problems(source: str) -> list[str]:
    """Outputs of a module deployed `if (cond)` are null when cond is false. Every read
    must assert non-null inside the true branch of a conditional on the same condition
    (`cond ? mod!.outputs.x : …`), which ARM's if() evaluates only when cond holds.
    Safe access (`mod.?outputs.x ?? fallback`) is refused: Bicep before 0.36.177, which
    older azd releases bundle, compiles it to an unguarded reference() that fails the
    deployment when the module is off. A plain `cond ? mod.outputs.x : …` works at run
    time but Bicep 0.36+ warns (BCP318); `!` changes nothing at run time."""
    root = parse(source)
    conditions: dict[str, str] = {}
    for mod in declarations(root, "module_declaration"):
        cond = next((c for c in mod.node.named_children if c.type == "if_statement"), None)
        if cond is not None:
            conditions[mod.name] = _bare(text(cond.named_children[0]))
    problems = []
    for node in walk(root):
        if node.type != "member_expression" or len(node.named_children) < 2:
            continue
        base, prop = node.named_children[0], node.named_children[-1]
        name = text(base)
        if base.type != "identifier" or name not in conditions or text(prop) != "outputs":
            continue
        tokens = {child.type for child in node.children}
        line = node.start_point[0] + 1
        if ".?" in tokens:
            problems.append(
                f"line {line}: {text(node.parent)!r} reads conditional module {name} with `.?` "
                "(unguarded before Bicep 0.36.177)"
            )
            continue
        if "!" in tokens and _guarded(node, conditions[name]):
            continue
        if "!" in tokens:
            problems.append(
                f"line {line}: {text(node.parent)!r} asserts {name}! outside `{conditions[name]} ? … : …`"
            )
        else:
            problems.append(
                f"line {line}: {text(node.parent)!r} reads outputs of conditional module {name} without `.?`"
            )
    return problems


def _bare(condition: str) -> str:
    condition = re.sub(r"\s+", "", condition)
    while condition.startswith("(") and condition.endswith(")"):
        condition = condition[1:-1]
    return condition


def _guarded(node: Node, condition: str) -> bool:
    child, parent = node, node.parent
    while parent is not None:
        if parent.type == "ternary_expression" and len(parent.named_children) == 3:
            test, then = parent.named_children[0], parent.named_children[1]
            if _bare(text(test)) == condition and child == then:
                return True
        child, parent = parent, parent.parent
    return False


def throughput_unit_problems(source: str, names: tuple[str, ...]) -> list[str]:
    problems = []
    params = parameters(source)
    for name in names:
        param = params.get(name)
        if param is None:
            problems.append(f"param {name} missing")
            continue
        low, high = param.decorators.get("minValue"), param.decorators.get("maxValue")
        if high is None or int(high) > STANDARD_MAX_THROUGHPUT_UNITS:
            problems.append(
                f"param {name}: @maxValue({high}) exceeds {STANDARD_MAX_THROUGHPUT_UNITS} (Standard tier)"
            )
        if low is None or int(low) < 0:
            problems.append(f"param {name}: @minValue({low}) must be >= 0")
        default = int(text(param.default)) if param.default is not None else None
        if default is not None and not (int(low or 0) <= default <= STANDARD_MAX_THROUGHPUT_UNITS):
            problems.append(f"param {name}: default {default} outside 0-{STANDARD_MAX_THROUGHPUT_UNITS}")
    return problems


# --------------------------------------------------------------------------- finding 1: storage SKU by region


def test_host_storage_sku_is_derived_from_the_region() -> None:
    assert storage_sku_problems(MAIN.read_text(), STORAGE.read_text()) == []


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_no_hard_coded_zone_redundant_storage(path: Path) -> None:
    assert hardcoded_zrs(path.read_text()) == []


def test_zone_redundant_region_list_excludes_regions_without_zrs() -> None:
    regions = string_list(parameters(MAIN.read_text())["zoneRedundantStorageRegions"].default)
    assert regions, "zoneRedundantStorageRegions has no default list"
    assert [r for r in regions if r != r.lower() or " " in r] == [], "use lower-case short region names"
    assert [r for r in REGIONS_WITHOUT_ZRS if r in regions] == []
    # main.bicepparam leaves location to the resource group; deploy.sh creates a new
    # group in AZURE_LOCATION (default below), which should be a ZRS region.
    default_region = re.search(r"AZURE_LOCATION:-(\w+)\}", (REPO / "scripts" / "deploy.sh").read_text())
    assert default_region and default_region.group(1) in regions, "the default region should get ZRS"


def test_location_is_documented_not_allow_listed() -> None:
    location = parameters(MAIN.read_text())["location"]
    assert "allowed" not in location.decorators, "an @allowed list of Flex regions goes stale"
    assert "Flex Consumption" in location.decorators.get("description", "")
    doc = DEPLOY_DOC.read_text()
    assert "list-flexconsumption-locations" in doc
    assert all(region in doc for region in REGIONS_WITHOUT_ZRS)


# --------------------------------------------------------------------------- finding 4: no cloud host names


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_no_cloud_host_names_in_bicep_strings(path: Path) -> None:
    assert cloud_hosts_in_strings(path.read_text()) == []


def test_minimum_bicep_version_is_documented() -> None:
    found = re.search(r"(?i)bicep cli\b.*?\*\*(\d+)\.(\d+)\.(\d+)\*\*", DEPLOY_DOC.read_text())
    assert found, "docs/deploy.md should state the minimum Bicep CLI version in bold"
    assert tuple(int(g) for g in found.groups()) >= MIN_BICEP_VERSION
    config = (BICEP / "bicepconfig.json").read_text()
    assert re.search(r'"no-hardcoded-env-urls":\s*\{\s*"level":\s*"error"', config)


# --------------------------------------------------------------------------- finding 5: storage service URIs


def test_host_storage_uses_service_uris_from_primary_endpoints() -> None:
    settings = app_settings(FUNCTION_APP.read_text())
    app_params = parameters(FUNCTION_APP.read_text())
    passed = module_params(MAIN.read_text(), "functionApp")
    storage_outputs = outputs(STORAGE.read_text())
    for setting, service in zip(STORAGE_URI_SETTINGS, ("blob", "queue", "table"), strict=True):
        assert setting in settings, f"{setting} not set"
        param = settings[setting]
        assert param in app_params, f"{setting} should come from a module parameter, got {param!r}"
        assert passed.get(param) == f"storage.outputs.{service}Endpoint"
        assert storage_outputs.get(f"{service}Endpoint") == f"storage.properties.primaryEndpoints.{service}"
    # The host's storage client provider prefers accountName over *ServiceUri and
    # builds public-cloud URIs from it, so setting it would undo the URIs.
    assert "AzureWebJobsStorage__accountName" not in settings


# --------------------------------------------------------------------------- finding 6: producer type


def test_producer_principal_type_is_a_parameter() -> None:
    for path in (MAIN, RBAC):
        param = parameters(path.read_text())["producerPrincipalType"]
        allowed = set(re.findall(r"'(\w+)'", param.decorators.get("allowed", "")))
        assert allowed == {"User", "ServicePrincipal", "Group"}, _rel(path)
        assert param.decorators.get("description"), _rel(path)
        assert text(param.default) == "'User'", _rel(path)
    assert module_params(MAIN.read_text(), "rbac")["producerPrincipalType"] == "producerPrincipalType"
    sender = next(
        d
        for d in declarations(parse(RBAC.read_text()), "resource_declaration")
        if d.name == "producerEventHubSender"
    )
    inner = properties(properties(body_object(sender.node)).get("properties"))
    assert text(inner.get("principalType")) == "producerPrincipalType"
    assigned = re.search(r"(?m)^param producerPrincipalType\s*=\s*(.+)$", PARAM_FILE.read_text())
    assert assigned is None or "readEnvironmentVariable(" in assigned.group(1), (
        "main.bicepparam pins the type"
    )


# --------------------------------------------------------------------------- finding 7: conditional modules


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_conditional_module_outputs_use_safe_access(path: Path) -> None:
    assert conditional_module_output_problems(path.read_text()) == []


def test_main_has_a_conditional_module_to_check() -> None:
    modules = declarations(parse(MAIN.read_text()), "module_declaration")
    conditional = [m.name for m in modules if any(c.type == "if_statement" for c in m.node.named_children)]
    assert conditional == ["durableTask"]
    assert "useDts ? durableTask!.outputs." in MAIN.read_text()


def safe_access_uses(source: str) -> list[str]:
    """Every `.?` safe access on the syntax tree (comments and strings do not count)."""
    return [
        f"line {node.start_point[0] + 1}: {text(node)!r}"
        for node in walk(parse(source))
        if node.type == "member_expression" and ".?" in {child.type for child in node.children}
    ]


@pytest.mark.parametrize("path", BICEP_FILES, ids=_rel)
def test_no_safe_access_anywhere(path: Path) -> None:
    # azd bundles its own Bicep (1.17.0 and older: before 0.36.177), which compiles
    # `.?` on a conditional module to an unguarded reference; none is used at all.
    assert safe_access_uses(path.read_text()) == []


# --------------------------------------------------------------------------- finding 8: Event Hubs TUs


def test_event_hubs_throughput_units_within_standard_limits() -> None:
    assert (
        throughput_unit_problems(EVENT_HUBS.read_text(), ("throughputUnits", "maximumThroughputUnits")) == []
    )
    names = ("eventHubsThroughputUnits", "eventHubsMaxThroughputUnits")
    assert throughput_unit_problems(MAIN.read_text(), names) == []
    assigned = dict(
        re.findall(r"(?m)^param (eventHubs\w*ThroughputUnits)\s*=\s*(\d+)", PARAM_FILE.read_text())
    )
    assert all(0 <= int(v) <= STANDARD_MAX_THROUGHPUT_UNITS for v in assigned.values()), assigned


# --------------------------------------------------------------------------- the checkers can fail


OLD_STORAGE = """
@allowed([
  'Standard_LRS'
  'Standard_ZRS'
])
@description('sku')
param skuName string = 'Standard_ZRS'
resource st 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  name: 'x'
  sku: {
    name: skuName
  }
}
@description('Primary blob endpoint, e.g. https://<name>.blob.core.windows.net/.')
output blobEndpoint string = st.properties.primaryEndpoints.blob
"""

OLD_MAIN = """
@minValue(1)
@maxValue(40)
@description('TUs')
param eventHubsThroughputUnits int = 4
@maxValue(40)
@description('ceiling')
param eventHubsMaxThroughputUnits int = 30
module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: 'x'
  }
}
module dts 'modules/durabletask.bicep' = if (useDts) {
  name: 'dts'
}
var endpoint = useDts ? dts.outputs.endpoint : ''
var wrong = other ? dts!.outputs.endpoint : ''
var plain = dts.outputs.name
var safe = dts.?outputs.name ?? ''
var asserted = (useDts) ? dts!.outputs.name : ''
var vault = 'https://${name}.vault.azure.net/'
"""


def test_negative_hard_coded_zrs_and_missing_region_logic_are_reported() -> None:
    problems = storage_sku_problems(OLD_MAIN, OLD_STORAGE)
    assert "param skuName defaults to 'Standard_ZRS'" in problems
    assert any("main.bicep does not pass skuName" in p for p in problems)
    fixed_storage = OLD_STORAGE.replace("param skuName string = 'Standard_ZRS'", "param skuName string")
    fixed_main = OLD_MAIN.replace("    name: 'x'\n", "    name: 'x'\n    skuName: 'Standard_LRS'\n")
    problems = storage_sku_problems(fixed_main, fixed_storage)
    assert any("does not depend on location" in p for p in problems)
    assert any("override parameter" in p for p in problems)


def test_negative_cloud_hosts_in_descriptions_and_values_are_reported() -> None:
    assert [p.split(":")[0] for p in cloud_hosts_in_strings(OLD_STORAGE)] == ["line 14"]
    assert any("vault.azure.net" in p for p in cloud_hosts_in_strings(OLD_MAIN))
    assert cloud_hosts_in_strings("var ok = environment().suffixes.storage\n") == []


def test_negative_unguarded_conditional_module_outputs_are_reported() -> None:
    # 18: guarded but without `!` (BCP318); 19: `!` under another condition;
    # 20: outright; 21: `.?` (unguarded in older Bicep); 22 (`!` under the module's
    # condition) is fine.
    problems = conditional_module_output_problems(OLD_MAIN)
    assert [p.split(":")[0] for p in problems] == ["line 18", "line 19", "line 20", "line 21"], problems
    assert "outside `useDts ?" in problems[1]
    assert "0.36.177" in problems[3]
    assert [p.split(":")[0] for p in safe_access_uses(OLD_MAIN)] == ["line 21"]
    assert safe_access_uses("// mod.?outputs.x in a comment\nvar s = 'a.?b'\n") == []


def test_negative_throughput_units_above_twenty_are_reported() -> None:
    problems = throughput_unit_problems(OLD_MAIN, ("eventHubsThroughputUnits", "eventHubsMaxThroughputUnits"))
    assert sum("exceeds 20" in p for p in problems) == 2
    assert any("default 30" in p for p in problems)
    assert any("eventHubsMaxThroughputUnits: @minValue(None)" in p for p in problems)

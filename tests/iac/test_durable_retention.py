"""The Durable Task Scheduler purges finished orchestrations: the delivery path starts one per trigger
batch, so the platform's default retention (30 days) would hold tens of millions of instances.

Source: the scheduler's autopurge (learn.microsoft.com, "Set autopurge retention policies for Durable
Task Scheduler"; resource type Microsoft.DurableTask/schedulers/retentionPolicies, whose only name is
'default'; an entry without orchestrationState is the default for every terminal state).
"""

from __future__ import annotations

import pytest
from test_bicep_structure import (
    BICEP,
    Node,
    body_object,
    declarations,
    parse,
    properties,
    resource_type,
    text,
)

pytestmark = pytest.mark.iac

DTS = BICEP / "modules" / "durabletask.bicep"


def retention_policies(source: str) -> list[dict[str, str]]:
    """The retention entries of every retentionPolicies resource, as {property: source text}."""
    found = []
    for decl in declarations(parse(source), "resource_declaration"):
        if not resource_type(decl.node).startswith("Microsoft.DurableTask/schedulers/retentionPolicies@"):
            continue
        body = properties(body_object(decl.node))
        assert text(body["name"]).strip("'") == "default", "the resource's name must be 'default'"
        array: Node = properties(body["properties"])["retentionPolicies"]
        for item in array.named_children:
            if item.type == "object":
                found.append({k: text(v).strip("'") for k, v in properties(item).items()})
    return found


def param_default(source: str, name: str) -> str:
    for decl in declarations(parse(source), "parameter_declaration"):
        if decl.name == name:
            return text(decl.node.named_children[-1])
    raise KeyError(name)


def test_completed_orchestrations_are_purged_after_a_day_and_failed_ones_kept_a_week() -> None:
    source = DTS.read_text()
    entries = retention_policies(source)
    by_state = {e.get("orchestrationState", "*"): e["retentionPeriodInDays"] for e in entries}
    assert by_state == {"*": "otherRetentionDays", "Completed": "completedRetentionDays"}
    assert param_default(source, "completedRetentionDays") == "1"
    assert param_default(source, "otherRetentionDays") == "7"


def test_the_checker_sees_a_template_without_a_retention_policy() -> None:
    bad = "resource s 'Microsoft.DurableTask/schedulers@2025-11-01' = {\n  name: 'x'\n  location: 'y'\n}\n"
    assert retention_policies(bad) == []

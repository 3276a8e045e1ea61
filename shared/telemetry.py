"""Logging and OpenTelemetry set-up, done once per process from function_app.py."""

from __future__ import annotations

import logging
import os

QUIET_LOGGERS = (
    "azure",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.cosmos",
    "azure.identity",
    "azure.eventhub",
    "urllib3",
)
_configured = False


def configure() -> None:
    """Quiet the SDK loggers; export to Application Insights when it is configured."""
    global _configured
    if _configured:
        return
    _configured = True
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if os.environ.get("APPLICATIONINSIGHTS_CONNECTION_STRING"):
        from azure.monitor.opentelemetry import configure_azure_monitor

        configure_azure_monitor(logger_name="shared")

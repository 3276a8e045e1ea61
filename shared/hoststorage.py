"""The host storage account (``AzureWebJobsStorage``): how the app reaches it, in one place.

Parked batches (blobs) and outbox reminders (a queue) live in the account the Functions host
already has, reached with the same settings the host reads: a connection string
(``AzureWebJobsStorage``: Azurite locally, ``UseDevelopmentStorage=true`` included), or, in
Azure, identity-based ``AzureWebJobsStorage__blobServiceUri`` / ``__queueServiceUri`` (or
``__accountName``, public cloud) with ``AzureWebJobsStorage__clientId`` for a user-assigned
identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class StorageNotConfigured(RuntimeError):
    """No host storage setting names the account; the message says which ones would."""


def connection(env: Mapping[str, str], service: str) -> tuple[str, str, Any]:
    """(connection string, service URI, credential): exactly one of the first two is non-empty."""
    conn = env.get("AzureWebJobsStorage", "")
    if conn:
        return conn, "", None
    uri = env.get(f"AzureWebJobsStorage__{service}ServiceUri", "")
    account = env.get("AzureWebJobsStorage__accountName", "")
    if not uri and account:
        uri = f"https://{account}.{service}.{env.get('STORAGE_ENDPOINT_SUFFIX') or 'core.windows.net'}"
    if not uri:
        raise StorageNotConfigured(
            f"no host storage: set AzureWebJobsStorage (a connection string, Azurite locally) or "
            f"AzureWebJobsStorage__{service}ServiceUri"
        )
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    client_id = env.get("AzureWebJobsStorage__clientId") or None
    credential = ManagedIdentityCredential(client_id=client_id) if client_id else DefaultAzureCredential()
    return "", uri, credential

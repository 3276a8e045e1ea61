// Host storage of the function app: AzureWebJobsStorage (host locks, Event Hubs
// checkpoints, Durable Functions task hub on the Azure Storage backend), the
// Flex Consumption deployment container, parked batches and the summary export.
// Shared keys are disabled: every client (host, Durable extension, deployment)
// authenticates with Entra ID.
//
// Blob soft delete is OFF: this account holds the Event Hubs checkpoints, and the
// Event Hubs checkpoint-store guidance says to disable soft delete (and versioning)
// on a checkpoint account, since every checkpoint overwrite would otherwise keep a
// soft-deleted snapshot and slow or fail checkpointing. Parked batches (raw events,
// player ids included) live here too: with soft delete off, an erasure or a
// re-injection that deletes a parked blob removes it at once, and a lifecycle rule
// deletes parked blobs after parkedBatchRetentionDays (docs/deploy.md, Retention).
// Container soft delete stays on: it only guards a deleted container and does not
// touch blob writes.

@description('Name of the storage account (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the storage account.')
param location string

@description('Tags applied to the storage account.')
param tags object

@description('Name of the blob container that holds the Flex Consumption deployment package.')
param deploymentContainerName string

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Replication of the host storage account, chosen by main.bicep from the region (zone-redundant where the region offers it, locally redundant elsewhere). The data is operational state only.')
param skuName string

@minValue(1)
@maxValue(365)
@description('Days a deleted container stays recoverable (container soft delete; blob soft delete is off, see the header).')
param containerSoftDeleteRetentionDays int = 7

@minValue(1)
@maxValue(3650)
@description('Days after its last modification a parked batch blob (container parked-batches) is deleted by the lifecycle rule.')
param parkedBatchRetentionDays int = 14

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowSharedKeyAccess: false
    allowBlobPublicAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    dnsEndpointType: 'Standard'
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
        queue: {
          enabled: true
          keyType: 'Account'
        }
        table: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-06-01' = {
  parent: storage
  name: 'default'
  properties: {
    // Off on the Event Hubs checkpoint account (see the header); no versioning either.
    deleteRetentionPolicy: {
      enabled: false
    }
    isVersioningEnabled: false
    containerDeleteRetentionPolicy: {
      enabled: true
      days: containerSoftDeleteRetentionDays
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Trigger batches the ingest function parked after its bounded retries (docs/parking.md).
resource parkedContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: 'parked-batches'
  properties: {
    publicAccess: 'None'
  }
}

// The daily summaries' retraining export: one JSON-lines blob per day and hour (docs/workflows.md).
resource summaryExportContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: 'summary-exports'
  properties: {
    publicAccess: 'None'
  }
}

// Retention of parked batches: they hold raw events (player ids included), so they
// never stay for ever. The rule deletes a parked blob parkedBatchRetentionDays after
// its last write; re-inject within that period (docs/parking.md).
resource lifecyclePolicy 'Microsoft.Storage/storageAccounts/managementPolicies@2025-06-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'delete-parked-batches'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${parkedContainer.name}/'
              ]
            }
            actions: {
              baseBlob: {
                delete: {
                  daysAfterModificationGreaterThan: parkedBatchRetentionDays
                }
              }
            }
          }
        }
      ]
    }
  }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

// Outbox reminders: the Player entity asks for a flush of its outbox later (shared/reminders.py).
resource outboxReminderQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-06-01' = {
  parent: queueService
  name: 'outbox-reminders'
}

@description('Name of the storage account.')
output name string = storage.name

@description('Resource id of the storage account.')
output id string = storage.id

// Service endpoints come from the account itself (primaryEndpoints), so they carry
// the right DNS suffix in every cloud; they end with a slash.
@description('Primary blob service endpoint of the account (primaryEndpoints.blob).')
output blobEndpoint string = storage.properties.primaryEndpoints.blob

@description('Primary queue service endpoint of the account (primaryEndpoints.queue).')
output queueEndpoint string = storage.properties.primaryEndpoints.queue

@description('Primary table service endpoint of the account (primaryEndpoints.table).')
output tableEndpoint string = storage.properties.primaryEndpoints.table

@description('Replication SKU the account was created with.')
output skuName string = storage.sku.name

@description('Name of the deployment package container.')
output deploymentContainerName string = deploymentContainer.name

@description('Name of the parked batches container.')
output parkedContainerName string = parkedContainer.name

@description('Days a parked batch is kept before the lifecycle rule deletes it.')
output parkedBatchRetentionDays int = parkedBatchRetentionDays

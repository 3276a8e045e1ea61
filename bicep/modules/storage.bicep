// Host storage of the function app: AzureWebJobsStorage (host locks, Event Hubs
// checkpoints, Durable Functions task hub on the Azure Storage backend) and the
// Flex Consumption deployment container. Shared keys are disabled: every client
// (host, Durable extension, deployment) authenticates with Entra ID.

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
@description('Days deleted blobs and containers stay recoverable.')
param softDeleteRetentionDays int = 7

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
    deleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: softDeleteRetentionDays
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

// Player interventions: Event Hubs -> Azure Functions (Flex Consumption, Python
// 3.11, Durable Entities) -> Cosmos DB. Resource-group scoped: deploy with
//   az deployment group create -g <rg> -f bicep/main.bicep -p bicep/main.bicepparam
// or `azd up` (azd creates/selects the resource group, see docs/deploy.md).
targetScope = 'resourceGroup'

@minLength(1)
@maxLength(64)
@description('azd environment name; part of the naming hash and the azd-env-name tag.')
param environmentName string

// Not restricted with @allowed: the Flex Consumption region list keeps growing.
// List it with `az functionapp list-flexconsumption-locations -o table`.
@minLength(1)
@description('Azure region for all resources. It must offer Flex Consumption (az functionapp list-flexconsumption-locations); it also decides the host storage replication (see zoneRedundantStorageRegions).')
param location string = resourceGroup().location

// Regions that offer zone-redundant storage for Standard general-purpose v2
// accounts (Azure Storage docs, "Azure regions that support zone-redundant
// storage"). A region missing here only costs zone redundancy (LRS instead of
// ZRS); a ZRS request in a region without it fails the deployment, e.g. in the
// Flex regions westus, northcentralus, westcentralus, ukwest, southindia and
// australiasoutheast.
@description('Regions (short names) with zone-redundant storage: the host storage account is Standard_ZRS there and Standard_LRS elsewhere, unless hostStorageSkuName is set.')
param zoneRedundantStorageRegions array = [
  'australiaeast'
  'brazilsouth'
  'canadacentral'
  'centralindia'
  'centralus'
  'chinanorth3'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'israelcentral'
  'italynorth'
  'japaneast'
  'koreacentral'
  'mexicocentral'
  'northeurope'
  'norwayeast'
  'polandcentral'
  'qatarcentral'
  'southafricanorth'
  'southcentralus'
  'southeastasia'
  'spaincentral'
  'swedencentral'
  'switzerlandnorth'
  'uaenorth'
  'uksouth'
  'usgovvirginia'
  'westeurope'
  'westus2'
  'westus3'
]

@allowed([
  ''
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Host storage replication override; empty (default) derives it from location: Standard_ZRS in zoneRedundantStorageRegions, Standard_LRS elsewhere.')
param hostStorageSkuName string = ''

@allowed([
  'azureStorage'
  'durableTaskScheduler'
])
@description('Durable Functions backend: the host storage account (default) or a Durable Task Scheduler.')
param durableBackend string = 'azureStorage'

@minLength(3)
@maxLength(45)
@description('Durable task hub name (letters and digits; valid for both backends).')
param durableTaskHubName string = 'interventions'

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Durable Task Scheduler SKU (durableTaskScheduler backend only).')
param durableTaskSchedulerSku string = 'Dedicated'

@minValue(1)
@maxValue(3)
@description('Durable Task Scheduler capacity units (Dedicated SKU only).')
param durableTaskSchedulerCapacity int = 1

@allowed([
  512
  2048
  4096
])
@description('Memory per Flex Consumption instance in MB.')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Maximum Flex Consumption instance count of the app.')
param maximumInstanceCount int = 100

@minValue(0)
@maxValue(20)
@description('Always-ready instances for the durable scale group (applies to the azureStorage backend).')
param durableAlwaysReadyInstances int = 1

@minValue(1)
@maxValue(32)
@description('Partitions of the player-events hub (fixed after creation on Standard).')
param eventHubPartitionCount int = 32

@minValue(1)
@maxValue(20)
@description('Event Hubs provisioned throughput units (Standard: 1-20).')
param eventHubsThroughputUnits int = 4

@description('Enable Event Hubs auto-inflate.')
param eventHubsAutoInflate bool = true

@minValue(1)
@maxValue(20)
@description('Event Hubs auto-inflate ceiling in throughput units (Standard: up to 20).')
param eventHubsMaxThroughputUnits int = 12

@allowed([
  'serverless'
  'autoscale'
])
@description('Cosmos DB capacity mode.')
param cosmosCapacityMode string = 'autoscale'

@minValue(1000)
@maxValue(1000000)
@description('Cosmos DB autoscale max RU/s shared by the database (autoscale mode only).')
param cosmosAutoscaleMaxThroughput int = 1000

@description('Object id of a principal allowed to send to player-events (e.g. your user for scripts/send_events.py); empty to skip.')
param producerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of producerPrincipalId: User for a person, ServicePrincipal for a CI identity or managed identity, Group for an Entra group (main.bicepparam reads PRODUCER_PRINCIPAL_TYPE).')
param producerPrincipalType string = 'User'

@description('Object id of the principal that deploys (azd passes AZURE_PRINCIPAL_ID, scripts/deploy.sh the signed-in az principal); it gets Key Vault Secrets Officer on the vault to create the pseudonymisation key secrets once. Empty to skip.')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of deployerPrincipalId: User for a person, ServicePrincipal for a CI identity.')
param deployerPrincipalType string = 'User'

@description('Object id of an operator (person or Entra group) who works with parked batches and daily summaries: Storage Blob Data Contributor on the host storage, Azure Event Hubs Data Sender on player-events, Cosmos DB Built-in Data Reader on the database. Empty to skip.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

@minValue(1)
@maxValue(3650)
@description('Days a parked batch (raw events, player ids included) is kept before a lifecycle rule deletes it; re-inject within that period.')
param parkedBatchRetentionDays int = 14

@description('Extra non-secret app settings for the function app (e.g. DISABLED_ACTION_TYPES, DAILY_ACTION_CAP).')
param additionalAppSettings object = {}

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
  workload: 'player-interventions'
}
var useDts = durableBackend == 'durableTaskScheduler'

// Host storage replication: the override, else ZRS where the region has it, else LRS.
var normalizedLocation = toLower(replace(location, ' ', ''))
var regionHasZrs = contains(zoneRedundantStorageRegions, normalizedLocation)
var hostStorageSku = !empty(hostStorageSkuName) ? hostStorageSkuName : (regionHasZrs ? 'Standard_ZRS' : 'Standard_LRS')

var names = {
  identity: 'id-${resourceToken}'
  logAnalytics: 'log-${resourceToken}'
  applicationInsights: 'appi-${resourceToken}'
  storage: 'st${resourceToken}'
  eventHubsNamespace: 'evhns-${resourceToken}'
  cosmos: 'cosmos-${resourceToken}'
  durableTaskScheduler: 'dts-${resourceToken}'
  plan: 'plan-${resourceToken}'
  functionApp: 'func-${resourceToken}'
  deploymentContainer: 'app-package-${resourceToken}'
  keyVault: 'kv-${resourceToken}'
}

// Key Vault secrets behind ERASURE_HASH_KEY and TELEMETRY_HASH_KEY. Their values are
// created once, outside the template (scripts/deploy.sh ensure-secrets, the azd
// postprovision hook), so a redeployment never regenerates them.
var secretNames = {
  erasureHashKey: 'erasure-hash-key'
  telemetryHashKey: 'telemetry-hash-key'
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  params: {
    name: names.identity
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    location: location
    tags: tags
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    name: names.storage
    location: location
    tags: tags
    deploymentContainerName: names.deploymentContainer
    skuName: hostStorageSku
    parkedBatchRetentionDays: parkedBatchRetentionDays
  }
}

module keyVault 'modules/keyvault.bicep' = {
  name: 'keyvault'
  params: {
    name: names.keyVault
    location: location
    tags: tags
  }
}

module eventHubs 'modules/eventhubs.bicep' = {
  name: 'eventhubs'
  params: {
    namespaceName: names.eventHubsNamespace
    location: location
    tags: tags
    eventHubName: 'player-events'
    consumerGroupName: 'interventions'
    partitionCount: eventHubPartitionCount
    throughputUnits: eventHubsThroughputUnits
    autoInflateEnabled: eventHubsAutoInflate
    maximumThroughputUnits: eventHubsMaxThroughputUnits
    // Same region rule as the host storage SKU: zone redundancy only where the region has zones.
    zoneRedundant: regionHasZrs
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  params: {
    accountName: names.cosmos
    location: location
    tags: tags
    databaseName: 'interventions'
    capacityMode: cosmosCapacityMode
    autoscaleMaxThroughput: cosmosAutoscaleMaxThroughput
  }
}

module durableTask 'modules/durabletask.bicep' = if (useDts) {
  name: 'durabletask'
  params: {
    name: names.durableTaskScheduler
    location: location
    tags: tags
    taskHubName: durableTaskHubName
    skuName: durableTaskSchedulerSku
    capacity: durableTaskSchedulerCapacity
  }
}

module functionApp 'modules/functionapp.bicep' = {
  name: 'functionapp'
  params: {
    name: names.functionApp
    planName: names.plan
    location: location
    tags: tags
    serviceName: 'api'
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageBlobServiceUri: storage.outputs.blobEndpoint
    storageQueueServiceUri: storage.outputs.queueEndpoint
    storageTableServiceUri: storage.outputs.tableEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    eventHubsFullyQualifiedNamespace: eventHubs.outputs.fullyQualifiedNamespace
    eventHubName: eventHubs.outputs.eventHubName
    consumerGroupName: eventHubs.outputs.consumerGroupName
    cosmosEndpoint: cosmos.outputs.endpoint
    cosmosDatabaseName: cosmos.outputs.databaseName
    durableBackend: durableBackend
    durableTaskHubName: durableTaskHubName
    // durableTask is conditional: read its outputs only in the true branch of the
    // same condition. Not `.?`/`??`: Bicep before 0.36.177 (bundled by older azd)
    // compiles that to an unguarded reference that fails when the module is off.
    durableTaskSchedulerEndpoint: useDts ? durableTask!.outputs.endpoint : ''
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    durableAlwaysReadyInstances: durableAlwaysReadyInstances
    keyVaultName: keyVault.outputs.name
    erasureHashKeySecretName: secretNames.erasureHashKey
    telemetryHashKeySecretName: secretNames.telemetryHashKey
    additionalAppSettings: additionalAppSettings
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  params: {
    appPrincipalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    eventHubsNamespaceName: eventHubs.outputs.namespaceName
    eventHubName: eventHubs.outputs.eventHubName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    cosmosAccountName: cosmos.outputs.accountName
    cosmosDatabaseName: cosmos.outputs.databaseName
    durableBackend: durableBackend
    // Valid names even when DTS is off (the assignment is then skipped), so the
    // existing-resource ids in rbac.bicep never contain empty segments.
    durableTaskSchedulerName: useDts ? durableTask!.outputs.name : names.durableTaskScheduler
    durableTaskHubName: useDts ? durableTask!.outputs.taskHubName : durableTaskHubName
    producerPrincipalId: producerPrincipalId
    producerPrincipalType: producerPrincipalType
    keyVaultName: keyVault.outputs.name
    deployerPrincipalId: deployerPrincipalId
    deployerPrincipalType: deployerPrincipalType
    operatorPrincipalId: operatorPrincipalId
    operatorPrincipalType: operatorPrincipalType
  }
}

// Outputs: names, ids, endpoints and identity ids only (azd stores them in .azure/<env>/.env).
@description('Region of the deployment.')
output AZURE_LOCATION string = location

@description('Tenant of the deployment.')
output AZURE_TENANT_ID string = tenant().tenantId

@description('Resource group of the deployment.')
output AZURE_RESOURCE_GROUP string = resourceGroup().name

@description('Function app name (azd service api).')
output SERVICE_API_NAME string = functionApp.outputs.name

@description('Function app name.')
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name

@description('Function app default host name.')
output AZURE_FUNCTION_APP_HOSTNAME string = functionApp.outputs.defaultHostName

@description('Client id of the app identity (AZURE_CLIENT_ID in the app).')
output AZURE_CLIENT_ID string = identity.outputs.clientId

// Not AZURE_PRINCIPAL_ID: azd keeps the signed-in principal under that name (it
// feeds deployerPrincipalId); an output of the same name would overwrite it.
@description('Principal id of the app identity.')
output AZURE_APP_PRINCIPAL_ID string = identity.outputs.principalId

@description('Key vault holding the pseudonymisation keys (the hooks create the secrets in it).')
output AZURE_KEY_VAULT_NAME string = keyVault.outputs.name

@description('Key Vault secret names behind ERASURE_HASH_KEY and TELEMETRY_HASH_KEY (space-separated).')
output AZURE_KEY_VAULT_SECRET_NAMES string = '${secretNames.erasureHashKey} ${secretNames.telemetryHashKey}'

@description('Event Hubs fully qualified namespace (for scripts/send_events.py --namespace).')
output EVENTHUB_FULLY_QUALIFIED_NAMESPACE string = eventHubs.outputs.fullyQualifiedNamespace

@description('Event hub name.')
output EVENTHUB_NAME string = eventHubs.outputs.eventHubName

@description('Consumer group of the function app.')
output EVENTHUB_CONSUMER_GROUP string = eventHubs.outputs.consumerGroupName

@description('Cosmos DB endpoint.')
output COSMOS_ENDPOINT string = cosmos.outputs.endpoint

@description('Cosmos DB account name.')
output COSMOS_ACCOUNT_NAME string = cosmos.outputs.accountName

@description('Cosmos DB database.')
output COSMOS_DATABASE string = cosmos.outputs.databaseName

@description('Host storage account name.')
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.name

@description('Replication SKU of the host storage account (derived from the region unless hostStorageSkuName is set).')
output AZURE_STORAGE_SKU string = storage.outputs.skuName

@description('Application Insights component name.')
output APPLICATIONINSIGHTS_NAME string = monitoring.outputs.applicationInsightsName

@description('Durable backend in use.')
output DURABLE_BACKEND string = durableBackend

@description('Days parked batches are kept (lifecycle rule on parked-batches).')
output PARKED_BATCH_RETENTION_DAYS int = storage.outputs.parkedBatchRetentionDays

@description('Durable Task Scheduler endpoint (empty on the azureStorage backend).')
output DURABLE_TASK_SCHEDULER_ENDPOINT string = useDts ? durableTask!.outputs.endpoint : ''

// Parameters for bicep/main.bicep. azd sets AZURE_ENV_NAME and AZURE_LOCATION;
// with plain `az deployment group create` export them first (scripts/deploy.sh does).
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'interventions-dev')
param location = readEnvironmentVariable('AZURE_LOCATION', 'swedencentral')

// Host storage replication: empty = Standard_ZRS where the region offers ZRS,
// Standard_LRS elsewhere (main.bicep zoneRedundantStorageRegions); set
// HOST_STORAGE_SKU (e.g. Standard_LRS) to override.
param hostStorageSkuName = readEnvironmentVariable('HOST_STORAGE_SKU', '')

// 'azureStorage' (default) or 'durableTaskScheduler'; override on the command line:
//   az deployment group create ... -p bicep/main.bicepparam -p durableBackend=durableTaskScheduler
param durableBackend = 'azureStorage'
param durableTaskHubName = 'interventions'
param durableTaskSchedulerSku = 'Dedicated'
param durableTaskSchedulerCapacity = 1

param instanceMemoryMB = 2048
param maximumInstanceCount = 100
param durableAlwaysReadyInstances = 1

param eventHubPartitionCount = 32
param eventHubsThroughputUnits = 4
param eventHubsAutoInflate = true
param eventHubsMaxThroughputUnits = 12

// 'autoscale' (steady 24/7 stream) or 'serverless' (dev/test)
param cosmosCapacityMode = 'autoscale'
param cosmosAutoscaleMaxThroughput = 1000

// Object id of whoever runs scripts/send_events.py (az ad signed-in-user show --query id -o tsv)
// and its type: User (default), ServicePrincipal (CI, managed identity) or Group.
// scripts/deploy.sh sets both from the signed-in az account.
param producerPrincipalId = readEnvironmentVariable('PRODUCER_PRINCIPAL_ID', '')
param producerPrincipalType = readEnvironmentVariable('PRODUCER_PRINCIPAL_TYPE', 'User')

param additionalAppSettings = {}

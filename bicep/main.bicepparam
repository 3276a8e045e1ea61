// Parameters for bicep/main.bicep. azd sets AZURE_ENV_NAME and AZURE_PRINCIPAL_ID;
// with plain `az deployment group create` export them first (scripts/deploy.sh does).
using './main.bicep'

param environmentName = readEnvironmentVariable('AZURE_ENV_NAME', 'interventions-dev')
// `location` is not set here: it defaults to the resource group's region (main.bicep),
// so an existing resource group elsewhere than AZURE_LOCATION is deployed where it is.
// AZURE_LOCATION only decides where a new resource group is created (azd, deploy.sh).
// Override with `-p location=<region>`.

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

// Whoever deploys gets Key Vault Secrets Officer on the vault to create the
// pseudonymisation key secrets once (azd sets AZURE_PRINCIPAL_ID to the signed-in
// principal; scripts/deploy.sh sets it and AZURE_PRINCIPAL_TYPE from the az account).
param deployerPrincipalId = readEnvironmentVariable('AZURE_PRINCIPAL_ID', '')
param deployerPrincipalType = readEnvironmentVariable('AZURE_PRINCIPAL_TYPE', 'User')

// Optional operator (person or Entra group): parked batches and the summary report.
param operatorPrincipalId = readEnvironmentVariable('OPERATOR_PRINCIPAL_ID', '')
param operatorPrincipalType = readEnvironmentVariable('OPERATOR_PRINCIPAL_TYPE', 'User')

// Days a parked batch is kept before the lifecycle rule deletes it.
param parkedBatchRetentionDays = 14

param additionalAppSettings = {}

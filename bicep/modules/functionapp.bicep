// Flex Consumption plan (FC1) + Linux Python 3.11 function app running as the
// user-assigned identity. App settings are identity-based only: no account
// keys, SAS or connection strings except the Application Insights connection
// string, which is not a secret once local auth is disabled on the component
// (ingestion then requires an Entra token; see APPLICATIONINSIGHTS_AUTHENTICATION_STRING).

@description('Name of the function app.')
param name string

@description('Name of the Flex Consumption plan.')
param planName string

@description('Azure region of the plan and app.')
param location string

@description('Tags applied to the plan and app (the app also gets azd-service-name).')
param tags object

@description('azd service name this app is deployed as (matches azure.yaml).')
param serviceName string = 'api'

@description('Resource id of the user-assigned identity the app runs as.')
param identityId string

@description('Client id of the user-assigned identity.')
param identityClientId string

@description('Blob service endpoint of the host storage account (storage.bicep output, from primaryEndpoints; ends with a slash).')
param storageBlobServiceUri string

@description('Queue service endpoint of the host storage account (storage.bicep output, from primaryEndpoints).')
param storageQueueServiceUri string

@description('Table service endpoint of the host storage account (storage.bicep output, from primaryEndpoints); set only on the azureStorage backend.')
param storageTableServiceUri string

@description('Name of the blob container that holds the deployment package.')
param deploymentContainerName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Fully qualified Event Hubs namespace host name (eventhubs.bicep output).')
param eventHubsFullyQualifiedNamespace string

@description('Name of the event hub the trigger reads.')
param eventHubName string

@description('Consumer group the trigger reads with.')
param consumerGroupName string

@description('Cosmos DB document endpoint.')
param cosmosEndpoint string

@description('Cosmos DB database name.')
param cosmosDatabaseName string

@allowed([
  'azureStorage'
  'durableTaskScheduler'
])
@description('Durable Functions backend: the host storage account or the Durable Task Scheduler.')
param durableBackend string

@description('Durable task hub name (Azure Storage: 3-45 letters/digits; DTS: the taskHubs resource name).')
param durableTaskHubName string

@description('Durable Task Scheduler endpoint; empty unless durableBackend is durableTaskScheduler.')
param durableTaskSchedulerEndpoint string = ''

@allowed([
  512
  2048
  4096
])
@description('Memory per Flex instance in MB (CPU and network scale with it).')
param instanceMemoryMB int = 2048

@minValue(40)
@maxValue(1000)
@description('Upper bound of Flex instances for the whole app.')
param maximumInstanceCount int = 100

@minValue(0)
@maxValue(20)
@description('Always-ready instances for the `durable` scale group (Azure Storage backend only; 0 = none).')
param durableAlwaysReadyInstances int = 1

@description('Name of the key vault holding the pseudonymisation keys (keyvault.bicep).')
param keyVaultName string

@description('Key Vault secret behind ERASURE_HASH_KEY (created once by the deploy script / azd hook, never by the template).')
param erasureHashKeySecretName string

@description('Key Vault secret behind TELEMETRY_HASH_KEY (created once by the deploy script / azd hook, never by the template).')
param telemetryHashKeySecretName string

@description('Extra non-secret app settings (kill switches, caps), merged last.')
param additionalAppSettings object = {}

var useDts = durableBackend == 'durableTaskScheduler'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

var alwaysReady = !useDts && durableAlwaysReadyInstances > 0 ? [
  {
    name: 'durable'
    instanceCount: durableAlwaysReadyInstances
  }
] : []

resource site 'Microsoft.Web/sites@2025-03-01' = {
  name: name
  location: location
  tags: union(tags, {
    'azd-service-name': serviceName
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    // Key Vault references resolve with the user-assigned identity (it has Key
    // Vault Secrets User on the vault); without this the platform would use a
    // system-assigned identity the app does not have.
    keyVaultReferenceIdentity: identityId
    httpsOnly: true
    clientAffinityEnabled: false
    siteConfig: {
      minTlsVersion: '1.2'
      http20Enabled: true
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobServiceUri}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
        alwaysReady: alwaysReady
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// Identity-based connections only. Every name in shared/config.py
// AZURE_SETTINGS must appear here (tests/iac checks it).
// Host storage: the service URIs come from the account's primaryEndpoints, so they
// are right in every cloud. The host's storage client provider uses a
// <connection>__<service>ServiceUri first and builds
// https://<accountName>.<service>.core.windows.net only when it is missing
// (azure-functions-host StorageServiceUriOptions.cs), so accountName would add
// nothing but a public-cloud fallback: it is not set.
var baseAppSettings = {
  AzureWebJobsStorage__blobServiceUri: storageBlobServiceUri
  AzureWebJobsStorage__queueServiceUri: storageQueueServiceUri
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  EventHubConnection__fullyQualifiedNamespace: eventHubsFullyQualifiedNamespace
  EventHubConnection__credential: 'managedidentity'
  EventHubConnection__clientId: identityClientId
  EVENTHUB_NAME: eventHubName
  EVENTHUB_CONSUMER_GROUP: consumerGroupName
  COSMOS_ENDPOINT: cosmosEndpoint
  COSMOS_DATABASE: cosmosDatabaseName
  AZURE_CLIENT_ID: identityClientId
  DURABLE_TASK_HUB: durableTaskHubName
  AzureFunctionsJobHost__extensions__durableTask__hubName: durableTaskHubName
  APPLICATIONINSIGHTS_CONNECTION_STRING: appInsights.properties.ConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'Authorization=AAD;ClientId=${identityClientId}'
  // The worker's sync thread pool runs entity batches: at least every Durable concurrency cap
  // that can run at once (docs/capacity.md, "Durable concurrency on one instance").
  PYTHON_THREADPOOL_THREAD_COUNT: '36'
  OUTBOX_REMINDER_QUEUE: 'outbox-reminders'
  // How ingest reaches the entities (docs/performance.md, "Signals"): one delivery orchestration
  // per trigger batch saves worker CPU but adds ~7 storage transactions per batch on the Azure
  // Storage backend (more in dollars than the CPU it saves); the Scheduler bills capacity instead.
  SIGNAL_PATH: useDts ? 'orchestration' : 'client'
  // Pseudonymisation keys: Key Vault references without a secret version, so the
  // platform picks up a new version on its next refresh. The values never appear
  // in the template (the appsettings resource replaces the whole list, so the
  // references must be here or a redeployment would drop them).
  ERASURE_HASH_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${erasureHashKeySecretName})'
  TELEMETRY_HASH_KEY: '@Microsoft.KeyVault(VaultName=${keyVaultName};SecretName=${telemetryHashKeySecretName})'
}

// Table service only on the Azure Storage backend (the Durable history and instance
// tables). With the Durable Task Scheduler the app has no table role, and the host's
// diagnostic event writer would get 403 on every flush if the URI were set; without
// a table URI the host cannot build a table client and leaves that writer off
// (azure-functions-host HostAzureTableStorageProvider.cs: TryCreateTableServiceClient
// returns false).
var storageTableAppSettings = useDts ? {} : {
  AzureWebJobsStorage__tableServiceUri: storageTableServiceUri
}

// Durable Task Scheduler: switch the Durable extension's storage provider and
// point it at the scheduler with the same identity (the value holds no secret).
var dtsAppSettings = useDts ? {
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__type: 'azureManaged'
  AzureFunctionsJobHost__extensions__durableTask__storageProvider__connectionStringName: 'DURABLE_TASK_SCHEDULER_CONNECTION_STRING'
  DURABLE_TASK_SCHEDULER_CONNECTION_STRING: 'Endpoint=${durableTaskSchedulerEndpoint};Authentication=ManagedIdentity;ClientID=${identityClientId}'
} : {}

resource appSettings 'Microsoft.Web/sites/config@2025-03-01' = {
  parent: site
  name: 'appsettings'
  properties: union(baseAppSettings, storageTableAppSettings, dtsAppSettings, additionalAppSettings)
}

// No FTP or basic-auth SCM publishing: deployments use Entra ID.
resource ftpPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

resource scmPolicy 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2025-03-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

@description('Name of the function app.')
output name string = site.name

@description('Resource id of the function app.')
output id string = site.id

@description('Default host name of the function app.')
output defaultHostName string = site.properties.defaultHostName

@description('Name of the Flex Consumption plan.')
output planName string = plan.name


// Least-privilege data-plane access for the function app's identity (and an
// optional event producer). Each assignment is scoped to the single resource it
// needs, named guid(scope, principal, role) so re-deployments are idempotent,
// and carries principalType so ARM does not wait on directory replication.

@description('Principal (object) id of the function app identity.')
param appPrincipalId string

@description('Name of the host storage account.')
param storageAccountName string

@description('Name of the Event Hubs namespace.')
param eventHubsNamespaceName string

@description('Name of the event hub.')
param eventHubName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Name of the Cosmos DB account.')
param cosmosAccountName string

@description('Name of the Cosmos DB database the app may read and write.')
param cosmosDatabaseName string

@allowed([
  'azureStorage'
  'durableTaskScheduler'
])
@description('Durable backend: decides between Storage queue/table roles and the Durable Task role.')
param durableBackend string

@description('Name of the Durable Task Scheduler (assigned only with durableTaskScheduler).')
param durableTaskSchedulerName string

@description('Name of the Durable Task Scheduler task hub (assigned only with durableTaskScheduler).')
param durableTaskHubName string

@description('Principal id that may send to the hub (load generator, upstream service); empty to skip.')
param producerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of producerPrincipalId.')
param producerPrincipalType string = 'User'

@description('Name of the key vault holding the pseudonymisation keys.')
param keyVaultName string

@description('Principal id of whoever deploys (azd: AZURE_PRINCIPAL_ID); gets Key Vault Secrets Officer on the vault so the deploy script / azd hook can create the secrets once. Empty to skip (then someone with that role creates them).')
param deployerPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of deployerPrincipalId.')
param deployerPrincipalType string = 'User'

@description('Principal id of an operator (person or group): Storage Blob Data Contributor on the host account (scripts.parked), Azure Event Hubs Data Sender on the hub (re-injection), Cosmos DB Built-in Data Reader on the database (summary report). Empty to skip.')
param operatorPrincipalId string = ''

@allowed([
  'User'
  'Group'
  'ServicePrincipal'
])
@description('Principal type of operatorPrincipalId.')
param operatorPrincipalType string = 'User'

// Built-in role definition ids (Azure RBAC built-in roles reference).
var roleIds = {
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  durableTaskDataContributor: '0ad04412-c4d5-4796-b79c-f76d14c8d402'
  keyVaultSecretsUser: '4633458b-17de-408a-b874-0445c86b69e6'
  keyVaultSecretsOfficer: 'b86a8fe4-44ce-4948-aee5-eccb2c155cd7'
  storageBlobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
}

// Cosmos DB data-plane built-in roles (not Azure RBAC roles): Built-in Data Contributor / Reader.
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'
var cosmosDataReaderRoleId = '00000000-0000-0000-0000-000000000001'

var useDts = durableBackend == 'durableTaskScheduler'

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' existing = {
  name: storageAccountName
}

resource eventHubsNamespace 'Microsoft.EventHub/namespaces@2026-01-01' existing = {
  name: eventHubsNamespaceName
}

resource eventHub 'Microsoft.EventHub/namespaces/eventhubs@2026-01-01' existing = {
  parent: eventHubsNamespace
  name: eventHubName
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource cosmosAccount 'Microsoft.DocumentDB/databaseAccounts@2025-04-15' existing = {
  name: cosmosAccountName
}

resource keyVault 'Microsoft.KeyVault/vaults@2024-11-01' existing = {
  name: keyVaultName
}

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' existing = {
  name: durableTaskSchedulerName
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' existing = {
  parent: scheduler
  name: durableTaskHubName
}

// --- Event Hubs: the app receives from the one hub; the producer sends to it.
resource appEventHubReceiver 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(eventHub.id, appPrincipalId, roleIds.eventHubsDataReceiver)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.eventHubsDataReceiver)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function app reads player-events (Event Hubs trigger).'
  }
}

resource producerEventHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(producerPrincipalId)) {
  name: guid(eventHub.id, producerPrincipalId, roleIds.eventHubsDataSender)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.eventHubsDataSender)
    principalId: producerPrincipalId
    principalType: producerPrincipalType
    description: 'Producer sends player events to player-events.'
  }
}

// --- Host storage: blobs (host, checkpoints, deployment package) always;
// queues and tables only when Durable Functions keeps its task hub there.
resource appBlobDataOwner 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roleIds.storageBlobDataOwner)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataOwner)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Functions host, Event Hubs checkpoints and Flex deployment package.'
  }
}

// Queues on either backend: the outbox-reminders queue (and, on Azure Storage, the task hub's).
resource appQueueDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(storage.id, appPrincipalId, roleIds.storageQueueDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageQueueDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Outbox reminders queue; Durable Functions control and work-item queues (Azure Storage backend).'
  }
}

resource appTableDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!useDts) {
  name: guid(storage.id, appPrincipalId, roleIds.storageTableDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageTableDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Durable Functions history and instance tables (Azure Storage backend).'
  }
}

// --- Durable Task Scheduler: data access to the one task hub.
resource appDurableTaskDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (useDts) {
  name: guid(taskHub.id, appPrincipalId, roleIds.durableTaskDataContributor)
  scope: taskHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.durableTaskDataContributor)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Durable Functions backend (Durable Task Scheduler task hub).'
  }
}

// --- Application Insights: Entra-authenticated telemetry ingestion.
resource appMetricsPublisher 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, appPrincipalId, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Telemetry ingestion with Entra ID (local auth is disabled).'
  }
}

// --- Key Vault: the app reads its secrets (Key Vault references); the deployer
// creates them once (scripts/deploy.sh ensure-secrets, the azd postprovision hook).
resource appKeyVaultSecretsUser 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(keyVault.id, appPrincipalId, roleIds.keyVaultSecretsUser)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsUser)
    principalId: appPrincipalId
    principalType: 'ServicePrincipal'
    description: 'Function app resolves the Key Vault references ERASURE_HASH_KEY and TELEMETRY_HASH_KEY.'
  }
}

resource deployerKeyVaultSecretsOfficer 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(deployerPrincipalId)) {
  name: guid(keyVault.id, deployerPrincipalId, roleIds.keyVaultSecretsOfficer)
  scope: keyVault
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.keyVaultSecretsOfficer)
    principalId: deployerPrincipalId
    principalType: deployerPrincipalType
    description: 'Deployer creates the pseudonymisation key secrets once (only when absent).'
  }
}

// --- Operator: parked batches (list, re-inject) and the summary report.
resource operatorBlobDataContributor 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(storage.id, operatorPrincipalId, roleIds.storageBlobDataContributor)
  scope: storage
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.storageBlobDataContributor)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'Operator lists, re-injects and deletes parked batches (scripts.parked).'
  }
}

resource operatorEventHubSender 'Microsoft.Authorization/roleAssignments@2022-04-01' = if (!empty(operatorPrincipalId)) {
  name: guid(eventHub.id, operatorPrincipalId, roleIds.eventHubsDataSender)
  scope: eventHub
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.eventHubsDataSender)
    principalId: operatorPrincipalId
    principalType: operatorPrincipalType
    description: 'Operator re-injects parked batches into player-events (scripts.parked reinject).'
  }
}

// --- Cosmos DB data plane: read/write items in the one database only.
var cosmosDatabaseScope = '${cosmosAccount.id}/dbs/${cosmosDatabaseName}'

// A Cosmos SQL role assignment carries no principalType, so a brand-new identity
// can still be unknown to the directory when it is created ("principal not
// found"). It is therefore created after the identity's Azure RBAC assignments
// (which carry principalType and are accepted for a fresh principal), and
// scripts/deploy.sh re-runs the (idempotent) deployment on that error.
resource appCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2025-04-15' = {
  parent: cosmosAccount
  name: guid(cosmosDatabaseScope, appPrincipalId, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmosAccount.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: appPrincipalId
    scope: cosmosDatabaseScope
  }
  dependsOn: [
    appEventHubReceiver
    appBlobDataOwner
    appQueueDataContributor
    appMetricsPublisher
    appKeyVaultSecretsUser
  ]
}

resource operatorCosmosDataReader 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2025-04-15' = if (!empty(operatorPrincipalId)) {
  parent: cosmosAccount
  name: guid(cosmosDatabaseScope, operatorPrincipalId, cosmosDataReaderRoleId)
  properties: {
    roleDefinitionId: '${cosmosAccount.id}/sqlRoleDefinitions/${cosmosDataReaderRoleId}'
    principalId: operatorPrincipalId
    scope: cosmosDatabaseScope
  }
  // One SQL role assignment write at a time on the account (control-plane writes
  // on one Cosmos account are serialised; parallel ones can conflict).
  dependsOn: [
    appCosmosDataContributor
  ]
}

@description('Resource ids of the unconditional Azure RBAC role assignments of the app identity.')
output appRoleAssignmentIds array = [
  appEventHubReceiver.id
  appBlobDataOwner.id
  appMetricsPublisher.id
  appKeyVaultSecretsUser.id
]

@description('Resource id of the Cosmos DB SQL role assignment.')
output cosmosRoleAssignmentId string = appCosmosDataContributor.id

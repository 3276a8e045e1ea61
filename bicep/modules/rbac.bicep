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

// Built-in role definition ids (Azure RBAC built-in roles reference).
var roleIds = {
  eventHubsDataReceiver: 'a638d3c7-ab3a-418d-83e6-5f17a39d4fde'
  eventHubsDataSender: '2b629674-e913-4c01-ae53-ef4638d8f975'
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
  durableTaskDataContributor: '0ad04412-c4d5-4796-b79c-f76d14c8d402'
}

// Cosmos DB data-plane built-in role (not an Azure RBAC role): Cosmos DB Built-in Data Contributor.
var cosmosDataContributorRoleId = '00000000-0000-0000-0000-000000000002'

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

// --- Cosmos DB data plane: read/write items in the one database only.
var cosmosDatabaseScope = '${cosmosAccount.id}/dbs/${cosmosDatabaseName}'

resource appCosmosDataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2025-04-15' = {
  parent: cosmosAccount
  name: guid(cosmosDatabaseScope, appPrincipalId, cosmosDataContributorRoleId)
  properties: {
    roleDefinitionId: '${cosmosAccount.id}/sqlRoleDefinitions/${cosmosDataContributorRoleId}'
    principalId: appPrincipalId
    scope: cosmosDatabaseScope
  }
}

@description('Resource ids of the unconditional Azure RBAC role assignments of the app identity.')
output appRoleAssignmentIds array = [
  appEventHubReceiver.id
  appBlobDataOwner.id
  appMetricsPublisher.id
]

@description('Resource id of the Cosmos DB SQL role assignment.')
output cosmosRoleAssignmentId string = appCosmosDataContributor.id

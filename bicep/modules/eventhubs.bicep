// Event Hubs namespace (Standard, SAS disabled), the player-events hub and the
// dedicated consumer group the function app reads with. Producers and the app
// authenticate with Entra ID (Azure Event Hubs Data Sender / Data Receiver).

@description('Name of the Event Hubs namespace (6-50 characters).')
@minLength(6)
@maxLength(50)
param namespaceName string

@description('Azure region of the namespace.')
param location string

@description('Tags applied to the namespace.')
param tags object

@description('Name of the event hub that carries player events.')
param eventHubName string = 'player-events'

@description('Name of the consumer group the function app reads with.')
param consumerGroupName string = 'interventions'

@minValue(1)
@maxValue(32)
@description('Partition count of the hub (fixed after creation on Standard). Bounds consumer parallelism: one Flex instance per partition at most.')
param partitionCount int = 32

@minValue(1)
@maxValue(7)
@description('Message retention in days (Standard tier: 1-7).')
param messageRetentionInDays int = 1

// Standard tier: sku.capacity and maximumThroughputUnits are documented as 0-20
// throughput units (Microsoft.EventHub/namespaces API reference).
@minValue(1)
@maxValue(20)
@description('Provisioned throughput units, 1-20 on Standard (1 TU = 1 MB/s or 1000 events/s in, 2 MB/s out).')
param throughputUnits int = 4

@description('Let Event Hubs raise throughput units automatically up to maximumThroughputUnits.')
param autoInflateEnabled bool = true

@minValue(1)
@maxValue(20)
@description('Upper bound for auto-inflate, 1-20 on Standard (ignored when auto-inflate is off).')
param maximumThroughputUnits int = 12

@description('Zone-redundant namespace; main.bicep sets it from the same region list as the host storage SKU (zoneRedundantStorageRegions), since a region without availability zones cannot host a zone-redundant namespace.')
param zoneRedundant bool

resource namespace 'Microsoft.EventHub/namespaces@2026-01-01' = {
  name: namespaceName
  location: location
  tags: tags
  sku: {
    name: 'Standard'
    tier: 'Standard'
    capacity: throughputUnits
  }
  properties: {
    disableLocalAuth: true
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
    isAutoInflateEnabled: autoInflateEnabled
    maximumThroughputUnits: autoInflateEnabled ? max(maximumThroughputUnits, throughputUnits) : 0
    kafkaEnabled: false
    zoneRedundant: zoneRedundant
  }
}

resource hub 'Microsoft.EventHub/namespaces/eventhubs@2026-01-01' = {
  parent: namespace
  name: eventHubName
  properties: {
    partitionCount: partitionCount
    messageRetentionInDays: messageRetentionInDays
  }
}

resource consumerGroup 'Microsoft.EventHub/namespaces/eventhubs/consumergroups@2026-01-01' = {
  parent: hub
  name: consumerGroupName
  properties: {
    userMetadata: 'Azure Functions ingest (player interventions)'
  }
}

// serviceBusEndpoint is https://<namespace>.<Service Bus DNS suffix of the cloud>:443/;
// derive the host from it instead of hard-coding the DNS suffix.
var fullyQualifiedNamespace = split(split(replace(namespace.properties.serviceBusEndpoint, 'https://', ''), ':')[0], '/')[0]

@description('Name of the namespace.')
output namespaceName string = namespace.name

@description('Resource id of the namespace.')
output namespaceId string = namespace.id

@description('Fully qualified namespace host name (<name>.<Service Bus DNS suffix of the cloud>), taken from serviceBusEndpoint.')
output fullyQualifiedNamespace string = fullyQualifiedNamespace

@description('Name of the event hub.')
output eventHubName string = hub.name

@description('Resource id of the event hub.')
output eventHubId string = hub.id

@description('Name of the consumer group.')
output consumerGroupName string = consumerGroup.name

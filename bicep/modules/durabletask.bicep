// Durable Task Scheduler (managed Durable Functions backend) and its task hub.
// Deployed only when main.bicep's durableBackend is 'durableTaskScheduler'.
// Access is Entra-only (Durable Task Data Contributor on the task hub).

@description('Name of the scheduler (3-64 letters, digits, hyphens).')
@minLength(3)
@maxLength(64)
param name string

@description('Azure region of the scheduler (keep it next to the function app).')
param location string

@description('Tags applied to the scheduler.')
param tags object

@description('Name of the task hub (3-64 letters, digits, hyphens).')
@minLength(3)
@maxLength(64)
param taskHubName string

@allowed([
  'Consumption'
  'Dedicated'
])
@description('Consumption: pay per action, up to 500 actions/s. Dedicated: 2,000 actions/s per capacity unit.')
param skuName string = 'Dedicated'

@minValue(1)
@maxValue(3)
@description('Capacity units (Dedicated only; 3 gives zone redundancy).')
param capacity int = 1

@minValue(0)
@maxValue(90)
@description('Days a Completed orchestration is kept before the scheduler purges it. The signal path starts one delivery orchestration per trigger batch (about 15 a second at the reference load): at the platform default of 30 days that is some 39 million instances held in the scheduler\'s memory.')
param completedRetentionDays int = 1

@minValue(1)
@maxValue(90)
@description('Days a Failed, Terminated or Canceled orchestration is kept before it is purged: long enough to investigate.')
param otherRetentionDays int = 7

@description('IP ranges allowed to reach the scheduler endpoint. An empty list denies everything.')
param ipAllowlist array = [
  '0.0.0.0/0'
]

resource scheduler 'Microsoft.DurableTask/schedulers@2025-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    ipAllowlist: ipAllowlist
    sku: skuName == 'Dedicated' ? {
      name: skuName
      capacity: capacity
    } : {
      name: skuName
    }
  }
}

resource taskHub 'Microsoft.DurableTask/schedulers/taskHubs@2025-11-01' = {
  parent: scheduler
  name: taskHubName
}

// Autopurge of orchestrations in a terminal state (the scheduler's own retention policy; the
// resource name must be 'default'). Only terminal states (Completed, Failed, Canceled, Terminated) are
// purged; running, pending and suspended instances, and entities, are left alone.
resource retention 'Microsoft.DurableTask/schedulers/retentionPolicies@2025-11-01' = {
  parent: scheduler
  name: 'default'
  properties: {
    retentionPolicies: [
      {
        retentionPeriodInDays: otherRetentionDays
      }
      {
        orchestrationState: 'Completed'
        retentionPeriodInDays: completedRetentionDays
      }
    ]
  }
}

@description('Name of the scheduler.')
output name string = scheduler.name

@description('Resource id of the scheduler.')
output id string = scheduler.id

@description('Scheduler endpoint as reported by the resource (properties.endpoint).')
output endpoint string = scheduler.properties.endpoint

@description('Name of the task hub.')
output taskHubName string = taskHub.name

@description('Resource id of the task hub.')
output taskHubId string = taskHub.id

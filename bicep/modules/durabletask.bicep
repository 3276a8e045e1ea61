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

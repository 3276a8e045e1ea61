// User-assigned managed identity of the function app. Every data-plane role
// (Event Hubs, Storage, Cosmos DB, Durable Task Scheduler, App Insights) is
// granted to this one identity; the app selects it with AZURE_CLIENT_ID and
// the <Connection>__clientId settings.

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region of the identity.')
param location string

@description('Tags applied to the identity.')
param tags object

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: name
  location: location
  tags: tags
}

@description('Resource id of the identity.')
output id string = identity.id

@description('Name of the identity.')
output name string = identity.name

@description('Client (application) id of the identity, used in app settings.')
output clientId string = identity.properties.clientId

@description('Object (principal) id of the identity, used in role assignments.')
output principalId string = identity.properties.principalId

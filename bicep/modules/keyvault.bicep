// Key Vault for the app's secrets: the pseudonymisation keys ERASURE_HASH_KEY and
// TELEMETRY_HASH_KEY (app settings that are Key Vault references, functionapp.bicep).
// Azure RBAC authorisation (no access policies), soft delete and purge protection,
// so a deleted key can be recovered and never purged early: erasure records hashed
// with a lost key stop matching. The template declares no secret and no value:
// scripts/deploy.sh and the azd postprovision hook create each secret once, only
// when absent, so a redeployment never regenerates a key (docs/deploy.md).

@description('Name of the key vault (3-24 letters, digits and hyphens, starting with a letter).')
@minLength(3)
@maxLength(24)
param name string

@description('Azure region of the key vault.')
param location string

@description('Tags applied to the key vault.')
param tags object

@minValue(7)
@maxValue(90)
@description('Days a deleted vault or secret stays recoverable (soft delete; fixed once the vault exists).')
param softDeleteRetentionInDays int = 90

resource vault 'Microsoft.KeyVault/vaults@2024-11-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    tenantId: subscription().tenantId
    sku: {
      family: 'A'
      name: 'standard'
    }
    enableRbacAuthorization: true
    enableSoftDelete: true
    softDeleteRetentionInDays: softDeleteRetentionInDays
    enablePurgeProtection: true
    enabledForDeployment: false
    enabledForDiskEncryption: false
    enabledForTemplateDeployment: false
    // Public network access as the rest of the templates (no VNet in this design);
    // data-plane access is Entra ID + Azure RBAC only.
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      bypass: 'AzureServices'
      defaultAction: 'Allow'
    }
  }
}

@description('Name of the key vault.')
output name string = vault.name

@description('Resource id of the key vault.')
output id string = vault.id

@description('Vault URI (properties.vaultUri, with the DNS suffix of the cloud).')
output uri string = vault.properties.vaultUri

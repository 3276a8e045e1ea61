// Cosmos DB (NoSQL) account with keys disabled, database `interventions` and
// the containers the app writes. Indexing is limited to the paths the code
// filters or sorts on; everything else is excluded to keep upserts cheap.

@description('Name of the Cosmos DB account (3-44 lowercase letters, digits, hyphens).')
@minLength(3)
@maxLength(44)
param accountName string

@description('Azure region of the account (single write region).')
param location string

@description('Tags applied to the account.')
param tags object

@description('Name of the SQL database.')
param databaseName string = 'interventions'

@allowed([
  'serverless'
  'autoscale'
])
@description('serverless: pay per RU consumed (dev, bursty); autoscale: shared database throughput scaling between 10% and 100% of autoscaleMaxThroughput.')
param capacityMode string = 'autoscale'

@minValue(1000)
@maxValue(1000000)
@description('Autoscale maximum RU/s shared by the database containers (capacityMode autoscale only).')
param autoscaleMaxThroughput int = 1000

@description('Zone-redundant write region (not available in every region, not with serverless).')
param zoneRedundant bool = false

@minValue(432000)
@description('Default TTL in seconds of documents in `actions` (the app sets a per-document ttl from ACTION_TTL_SECONDS, which it refuses under 5 days: a day\'s summary becomes final 4 days after it).')
param actionsTtlSeconds int = 604800

@minValue(60)
@description('Default TTL in seconds of documents in `deadletters`.')
param deadLettersTtlSeconds int = 1209600

resource account 'Microsoft.DocumentDB/databaseAccounts@2025-04-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: capacityMode == 'serverless' ? false : zoneRedundant
      }
    ]
    capabilities: capacityMode == 'serverless' ? [
      {
        name: 'EnableServerless'
      }
    ] : []
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    enableAutomaticFailover: false
    enableMultipleWriteLocations: false
    backupPolicy: {
      type: 'Continuous'
      continuousModeProperties: {
        tier: 'Continuous7Days'
      }
    }
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2025-04-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
    options: capacityMode == 'autoscale' ? {
      autoscaleSettings: {
        maxThroughput: autoscaleMaxThroughput
      }
    } : {}
  }
}

// Actions: pk /playerId; the delivery service and the erase API filter on
// playerId/status/type and order by decidedAt; the daily summary reads one
// day and hour at a time (docs/workflows.md).
resource actions 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'actions'
  properties: {
    resource: {
      id: 'actions'
      partitionKey: {
        paths: [
          '/playerId'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: actionsTtlSeconds
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/playerId/?'
          }
          {
            path: '/status/?'
          }
          {
            path: '/decidedAt/?'
          }
          {
            path: '/type/?'
          }
          {
            path: '/day/?'
          }
          {
            path: '/hour/?'
          }
        ]
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

// Dead letters: pk /playerId (the code writes the player id, or "unknown" when
// the event could not be parsed far enough to have one).
resource deadLetters 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'deadletters'
  properties: {
    resource: {
      id: 'deadletters'
      partitionKey: {
        paths: [
          '/playerId'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: deadLettersTtlSeconds
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/playerId/?'
          }
          {
            path: '/reason/?'
          }
        ]
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

// Daily summaries (functions/summaries.py): pk /day, one document per hour and
// an index per day, upserted under deterministic ids; TTL enabled with
// no default expiry (-1) so a document can opt in with its own ttl.
resource summaries 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'summaries'
  properties: {
    resource: {
      id: 'summaries'
      partitionKey: {
        paths: [
          '/day'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: -1
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [
          {
            path: '/day/?'
          }
        ]
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

// Erasure records: one per erased player (a hash of the id, never the id), pk /playerKey, kept
// longer than Event Hubs keeps events so that no replay can bring the player's dead letters back.
resource erasures 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2025-04-15' = {
  parent: database
  name: 'erasures'
  properties: {
    resource: {
      id: 'erasures'
      partitionKey: {
        paths: [
          '/playerKey'
        ]
        kind: 'Hash'
        version: 2
      }
      defaultTtl: -1
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: []
        excludedPaths: [
          {
            path: '/*'
          }
        ]
      }
    }
  }
}

@description('Name of the Cosmos DB account.')
output accountName string = account.name

@description('Resource id of the Cosmos DB account.')
output accountId string = account.id

@description('Document endpoint of the account (properties.documentEndpoint; cloud-specific host).')
output endpoint string = account.properties.documentEndpoint

@description('Name of the SQL database.')
output databaseName string = database.name

@description('Names of the containers.')
output containerNames array = [
  actions.name
  deadLetters.name
  summaries.name
  erasures.name
]

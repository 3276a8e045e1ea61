// Log Analytics workspace + workspace-based Application Insights with local
// (instrumentation-key) auth disabled: telemetry is accepted only with an Entra
// token (APPLICATIONINSIGHTS_AUTHENTICATION_STRING + Monitoring Metrics
// Publisher on the component). Also a small workbook of the pipeline.

@description('Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Name of the Application Insights component.')
param applicationInsightsName string

@description('Azure region of the monitoring resources.')
param location string

@description('Tags applied to the monitoring resources.')
param tags object

@minValue(30)
@maxValue(730)
@description('Log Analytics retention in days.')
param retentionInDays int = 30

@description('Daily ingestion cap in GB for the workspace (-1 = no cap).')
param dailyQuotaGb int = -1

resource logAnalytics 'Microsoft.OperationalInsights/workspaces@2025-07-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: retentionInDays
    workspaceCapping: {
      dailyQuotaGb: dailyQuotaGb
    }
    features: {
      disableLocalAuth: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logAnalytics.id
    DisableLocalAuth: true
    publicNetworkAccessForIngestion: 'Enabled'
    publicNetworkAccessForQuery: 'Enabled'
  }
}

// Pipeline workbook: one chart per OpenTelemetry instrument the app records
// (shared/telemetry.py METRIC_NAMES; tests/iac checks the two agree), plus the
// functions' executions and exceptions.
var workbookContent = {
  version: 'Notebook/1.0'
  items: [
    {
      type: 1
      content: {
        json: '## Player interventions pipeline\nIngest (Event Hubs trigger) -> Player entity -> Cosmos DB actions. Follow one event: search Transactions for its trace id (the action document keeps its traceparent).'
      }
      name: 'title'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name in ("pi.events.in", "pi.events.dropped", "pi.signals", "pi.entity.operations", "pi.scores", "pi.actions") | summarize value = sum(valueSum) by name, bin(timestamp, 5m) | render timechart'
        size: 0
        title: 'Funnel: events in, dropped, signals, entity operations, scores, actions (5 min)'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'funnel'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name == "pi.events.deadlettered" | extend reason = tostring(customDimensions["reason"]) | summarize value = sum(valueSum) by reason, bin(timestamp, 5m) | render timechart'
        size: 0
        title: 'Dead-lettered events by reason'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'deadletters'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name == "pi.actions" | extend type = tostring(customDimensions["type"]) | summarize value = sum(valueSum) by type, bin(timestamp, 5m) | render timechart'
        size: 0
        title: 'Actions by type'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'actions'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name == "pi.rejections" | extend rule = tostring(customDimensions["rule"]) | summarize value = sum(valueSum) by rule, bin(timestamp, 5m) | render timechart'
        size: 0
        title: 'Candidate actions stopped, by policy rule'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'rejections'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name == "pi.action.latency" | summarize mean_ms = sum(valueSum) / sum(valueCount), max_ms = max(valueMax) by bin(timestamp, 5m) | render timechart'
        size: 0
        title: 'Event-to-action latency (ms): mean and max'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'latency'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name in ("pi.actions", "pi.actions.suppressed", "pi.outcomes") | extend kind = strcat(name, " ", tostring(customDimensions["type"]), tostring(customDimensions["result"])) | summarize value = sum(valueSum) by kind, bin(timestamp, 1h) | render timechart'
        size: 0
        title: 'Actions sent, suppressed by a guardrail, and responses recorded'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'outcomes'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name in ("pi.actions.holdout", "pi.outcome.watches", "pi.outcome.writes", "pi.shadow.decisions") | extend kind = strcat(name, " ", tostring(customDimensions["type"]), " ", tostring(customDimensions["result"])) | summarize value = sum(valueSum) by kind, bin(timestamp, 1h) | render timechart'
        size: 0
        title: 'Holdout decisions, outcome windows ended and met, challenger agreement'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'experiments'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name == "pi.events.duplicate" | summarize value = sum(valueSum) by bin(timestamp, 5m) | render timechart'
        size: 0
        title: 'Redelivered events ignored by the entities'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'redelivery'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'customMetrics | where name in ("pi.outbox.size", "pi.actions.write_failures", "pi.outbox.expired", "pi.deadletters.write_failures", "pi.batches.parked", "pi.actions.refused", "pi.outbox.reminders", "pi.deadletters.erased") | summarize total = sum(valueSum), peak = max(valueMax) by name, bin(timestamp, 5m) | extend value = iff(name == "pi.outbox.size", peak, total) | project timestamp, name, value | render timechart'
        size: 0
        title: 'Outbox: size (max), action write failures, expired actions; dead letters refused'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'timechart'
      }
      name: 'outbox'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'requests | summarize executions = count(), failures = countif(success == false), p95ms = percentile(duration, 95) by operation_Name, bin(timestamp, 5m) | order by timestamp desc'
        size: 0
        title: 'Function executions, failures and p95 duration (5 min)'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'table'
      }
      name: 'executions'
    }
    {
      type: 3
      content: {
        version: 'KqlItem/1.0'
        query: 'exceptions | summarize count() by type, outerMessage, bin(timestamp, 15m) | order by count_ desc'
        size: 0
        title: 'Exceptions'
        queryType: 0
        resourceType: 'microsoft.insights/components'
        visualization: 'table'
      }
      name: 'exceptions'
    }
  ]
}

resource workbook 'Microsoft.Insights/workbooks@2023-06-01' = {
  name: guid(appInsights.id, 'interventions-pipeline-workbook')
  location: location
  tags: tags
  kind: 'shared'
  properties: {
    displayName: 'Player interventions pipeline'
    category: 'workbook'
    sourceId: appInsights.id
    serializedData: string(workbookContent)
  }
}

@description('Name of the Application Insights component.')
output applicationInsightsName string = appInsights.name

@description('Resource id of the Application Insights component.')
output applicationInsightsId string = appInsights.id

@description('Name of the Log Analytics workspace.')
output logAnalyticsName string = logAnalytics.name

@description('Resource id of the Log Analytics workspace.')
output logAnalyticsId string = logAnalytics.id

@description('Resource id of the pipeline workbook.')
output workbookId string = workbook.id

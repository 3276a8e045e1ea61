#!/usr/bin/env pwsh
# Windows variant of `scripts/deploy.sh wait-for-roles` (the azd predeploy hook in
# azure.yaml runs this one on Windows, deploy.sh elsewhere): a bounded wait until
# the app identity's (AZURE_APP_PRINCIPAL_ID, a template output) newest role
# assignment is ROLE_PROPAGATION_SECONDS (180) old, polling every
# ROLE_POLL_SECONDS (30); returns at once on later deployments. Never fails the
# deployment: without az, a login or the output it only prints a hint.
$ErrorActionPreference = 'Continue'
Set-StrictMode -Version Latest

$principal = $env:AZURE_APP_PRINCIPAL_ID
$propagation = if ($env:ROLE_PROPAGATION_SECONDS) { [int]$env:ROLE_PROPAGATION_SECONDS } else { 180 }
$poll = if ($env:ROLE_POLL_SECONDS) { [int]$env:ROLE_POLL_SECONDS } else { 30 }
if (-not $principal) {
    Write-Host '==> AZURE_APP_PRINCIPAL_ID is not set (provision first); not waiting for role assignments'
    exit 0
}
if (-not (Get-Command az -ErrorAction SilentlyContinue)) {
    Write-Host "==> az is missing: cannot check role assignment age; if the deploy fails with 403, run 'azd deploy' again in a few minutes"
    exit 0
}
$created = az role assignment list --all --assignee $principal --query '[].createdOn' -o tsv 2>$null
if ($LASTEXITCODE -ne 0 -or -not $created) {
    Write-Host "==> cannot read the role assignments of $principal; not waiting (if the deploy fails with 403, run 'azd deploy' again in a few minutes)"
    exit 0
}
$newest = ($created -split "`n" | Where-Object { $_.Trim() } | ForEach-Object {
        [DateTimeOffset]::Parse($_.Trim(), [Globalization.CultureInfo]::InvariantCulture, [Globalization.DateTimeStyles]::AssumeUniversal)
    } | Measure-Object -Property UtcTicks -Maximum).Maximum
$age = [int][Math]::Max(0, ([DateTimeOffset]::UtcNow.UtcTicks - $newest) / [TimeSpan]::TicksPerSecond)
$remaining = $propagation - $age
if ($remaining -le 0) { exit 0 }
$attempts = [int][Math]::Ceiling($remaining / $poll)
for ($n = 1; $n -le $attempts; $n++) {
    $step = [Math]::Min($remaining, $poll)
    Write-Host "==> waiting for role assignments to propagate (attempt $n/${attempts}: newest is ${age}s old, waiting for ${propagation}s)"
    Start-Sleep -Seconds $step
    $age += $step
    $remaining -= $step
}
exit 0

#!/usr/bin/env pwsh
# Windows variant of `scripts/deploy.sh ensure-secrets` (the azd postprovision hook
# in azure.yaml runs this one on Windows, deploy.sh elsewhere): create each Key
# Vault secret named in AZURE_KEY_VAULT_SECRET_NAMES only when the vault answers
# SecretNotFound, with 32 random bytes (base64) from the .NET RNG. An existing
# secret is never touched (a new erasure key would stop existing erasure records
# matching). Other answers (403 while the deployer's Key Vault Secrets Officer role
# propagates) are retried, bounded: RETRY_ATTEMPTS (8), RETRY_DELAY (15 s) doubling
# up to RETRY_MAX_DELAY (120 s). When a secret was created, the function app is
# restarted so its Key Vault references resolve. Needs a logged-in az.
# Continue: az writes to stderr, which must not end the script; every az call's exit
# code is checked instead. Needs PowerShell 7.2+ (.NET 6 RandomNumberGenerator.GetBytes).
$ErrorActionPreference = 'Continue'
Set-StrictMode -Version Latest

$vault = $env:AZURE_KEY_VAULT_NAME
$names = "$env:AZURE_KEY_VAULT_SECRET_NAMES".Split(' ', [System.StringSplitOptions]::RemoveEmptyEntries)
if (-not $vault -or $names.Count -eq 0) {
    Write-Error 'AZURE_KEY_VAULT_NAME / AZURE_KEY_VAULT_SECRET_NAMES are not set: provision first (azd provision)'
    exit 1
}
if ($env:AZURE_PRINCIPAL_ID -and $env:AZURE_PRINCIPAL_ID -eq $env:AZURE_APP_PRINCIPAL_ID) {
    # An azd environment provisioned when the app identity's output was named
    # AZURE_PRINCIPAL_ID: azd then passed the app identity as deployerPrincipalId.
    Write-Error 'AZURE_PRINCIPAL_ID is the app identity, so the template made it the deployer; run azd env set AZURE_PRINCIPAL_ID (az ad signed-in-user show --query id -o tsv) and azd provision again'
    exit 1
}
$attempts = if ($env:RETRY_ATTEMPTS) { [int]$env:RETRY_ATTEMPTS } else { 8 }
$firstDelay = if ($env:RETRY_DELAY) { [int]$env:RETRY_DELAY } else { 15 }
$maxDelay = if ($env:RETRY_MAX_DELAY) { [int]$env:RETRY_MAX_DELAY } else { 120 }

# Returns 'exists' or 'created'; throws a message to retry on; exits on a deleted secret.
function Confirm-Secret([string]$Vault, [string]$Name) {
    $err = az keyvault secret show --vault-name $Vault --name $Name --query id -o tsv 2>&1
    if ($LASTEXITCODE -eq 0) { return 'exists' }
    if ("$err" -notmatch 'SecretNotFound') { throw "cannot read secret $Name in ${Vault} yet: $err" }
    $file = New-TemporaryFile
    try {
        $value = [Convert]::ToBase64String([System.Security.Cryptography.RandomNumberGenerator]::GetBytes(32))
        if ($value.Length -ne 44) { throw "could not generate a 32-byte key for $Name" }
        [System.IO.File]::WriteAllText($file.FullName, $value)
        $err = az keyvault secret set --vault-name $Vault --name $Name --file $file.FullName --encoding utf-8 `
            --content-type 'pseudonymisation key (HMAC-SHA-256), created once; see docs/deploy.md' -o none 2>&1
        $status = $LASTEXITCODE
    }
    finally {
        Remove-Item -Force $file.FullName
    }
    if ($status -ne 0) {
        if ("$err" -match 'ObjectIsDeletedButRecoverable') {
            Write-Error "secret $Name is deleted but recoverable: recover it (keeps the key) with az keyvault secret recover --vault-name $Vault --name $Name"
            exit 2
        }
        throw "cannot create secret $Name in ${Vault} yet: $err"
    }
    return 'created'
}

$created = $false
foreach ($name in $names) {
    $delay = $firstDelay
    for ($attempt = 1; ; $attempt++) {
        try {
            $result = Confirm-Secret $vault $name
            break
        }
        catch {
            if ($attempt -ge $attempts) {
                Write-Error "secret $name in $vault could not be checked or created after $attempt attempts ($_); the deployer needs Key Vault Secrets Officer on the vault (deployerPrincipalId, docs/deploy.md)"
                exit 1
            }
            Write-Host "==> waiting for role assignments to propagate (attempt $($attempt + 1)/$attempts in ${delay}s): $_"
            Start-Sleep -Seconds $delay
            $delay = [Math]::Min($delay * 2, $maxDelay)
        }
    }
    Write-Host "==> secret $name in ${vault}: $result"
    if ($result -eq 'created') { $created = $true }
}

if ($created -and $env:AZURE_FUNCTION_APP_NAME -and $env:AZURE_RESOURCE_GROUP) {
    Write-Host "==> restarting $env:AZURE_FUNCTION_APP_NAME so its Key Vault references resolve the new secrets"
    az functionapp restart --resource-group $env:AZURE_RESOURCE_GROUP --name $env:AZURE_FUNCTION_APP_NAME -o none
    if ($LASTEXITCODE -ne 0) { Write-Host '==> restart failed; the references resolve at the next restart or deployment' }
}
exit 0

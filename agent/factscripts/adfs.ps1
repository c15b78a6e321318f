# AD FS nodes: the role, its service account, and the registered authentication providers.
Read-Fact 'adfs' {
    $svc = Get-ServiceInfo 'adfssrv'
    @{ feature_install_state = (Get-FeatureState 'ADFS-Federation')
       service_status = $(if ($svc) { [string]$svc.State } else { $null })
       service_account = $(if ($svc) { [string]$svc.StartName } else { $null }) }
}
Read-Fact 'adfs_providers' {
    if (-not (Get-Command Get-AdfsAuthenticationProvider -ErrorAction SilentlyContinue)) {
        throw 'Get-AdfsAuthenticationProvider is not available on this host (AD FS on Windows Server 2012 R2 or later is needed)'
    }
    @{ names = @(Get-AdfsAuthenticationProvider | ForEach-Object { [string]$_.Name }) }
}
# Per node: MFA Server's AD FS adapter installed on this node (its product, its assembly in the GAC).
Read-Fact 'adfs_adapter_install' {
    $keys = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*',
              'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*')
    $app = Get-ItemProperty -Path $keys -ErrorAction SilentlyContinue |
        Where-Object { $_.DisplayName -like '*Multi-Factor Authentication*AD FS*' } |
        Select-Object -First 1
    $gac = Join-Path $env:windir 'Microsoft.NET\assembly\GAC_MSIL'
    @{ product = $(if ($app) { [string]$app.DisplayName } else { $null })
       version = $(if ($app) { [string]$app.DisplayVersion } else { $null })
       gac_assemblies = @(Get-ChildItem -Path $gac -Filter '*MultiFactorAuthentication*' -ErrorAction SilentlyContinue |
           ForEach-Object { [string]$_.Name }) }
}

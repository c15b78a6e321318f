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

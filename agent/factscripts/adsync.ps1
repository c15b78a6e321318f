# Directory sync servers: the Azure AD Connect sync service.
Read-Fact 'adsync' {
    $svc = Get-ServiceInfo 'ADSync'
    @{ service_status = $(if ($svc) { [string]$svc.State } else { $null }) }
}

# User Portal web servers: the certificates of the HTTPS bindings and the SCHANNEL protocols.
Read-Fact 'portal_tls' {
    Import-Module WebAdministration -ErrorAction Stop
    $bindings = @(Get-WebBinding -Protocol https | ForEach-Object {
        $site = [string]$_.GetParentElement().Attributes['name'].Value
        $hash = $(if ($_.certificateHash) { [string]$_.certificateHash } else { $null })
        $store = $(if ($_.certificateStoreName) { [string]$_.certificateStoreName } else { 'My' })
        $c = $null
        if ($hash) { $c = Get-Item -Path "Cert:\LocalMachine\$store\$hash" -ErrorAction SilentlyContinue }
        $size = $null
        if ($c) { try { $size = [int]$c.PublicKey.Key.KeySize } catch { $size = $null } }
        @{ site = $site; binding = [string]$_.bindingInformation; thumbprint = $hash
           subject = $(if ($c) { [string]$c.Subject } else { $null })
           issuer = $(if ($c) { [string]$c.Issuer } else { $null })
           not_before = $(if ($c) { $c.NotBefore.ToUniversalTime().ToString('o') } else { $null })
           not_after = $(if ($c) { $c.NotAfter.ToUniversalTime().ToString('o') } else { $null })
           key_algorithm = $(if ($c) { [string]$c.PublicKey.Oid.FriendlyName } else { $null })
           key_size = $size } })
    $base = 'HKLM:\SYSTEM\CurrentControlSet\Control\SecurityProviders\SCHANNEL\Protocols'
    $schannel = @('SSL 2.0', 'SSL 3.0', 'TLS 1.0', 'TLS 1.1') | ForEach-Object {
        $k = Get-ItemProperty -Path "$base\$_\Server" -ErrorAction SilentlyContinue
        @{ protocol = $_
           enabled = $(if ($k -and $null -ne $k.Enabled) { [int]$k.Enabled } else { $null })
           disabled_by_default = $(if ($k -and $null -ne $k.DisabledByDefault) { [int]$k.DisabledByDefault } else { $null }) } }
    @{ bindings = $bindings; schannel = @($schannel) }
}

# Facts every host with a role needs: OS, MFA Server presence, addresses, clock.
Read-Fact 'os' {
    $o = Get-WmiObject -Class Win32_OperatingSystem
    @{ caption = [string]$o.Caption; version = [string]$o.Version
       build_number = [string]$o.BuildNumber; product_type = [int]$o.ProductType }
}
Read-Fact 'mfa_server' {
    $keys = @('HKLM:\SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall\*',
              'HKLM:\SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall\*')
    $app = Get-ItemProperty -Path $keys -ErrorAction SilentlyContinue |
        Where-Object { $_.DisplayName -like '*Multi-Factor Authentication Server*' } |
        Select-Object -First 1
    $pf = Get-ItemProperty -Path 'HKLM:\SOFTWARE\WOW6432Node\Positive Networks\PhoneFactor' -ErrorAction SilentlyContinue
    $path = $null
    if ($pf -and $pf.InstallPath) { $path = [string]$pf.InstallPath }
    elseif ($app -and $app.InstallLocation) { $path = [string]$app.InstallLocation }
    @{ installed = [bool]($app -or $pf)
       display_name = $(if ($app) { [string]$app.DisplayName } else { $null })
       version = $(if ($app) { [string]$app.DisplayVersion } else { $null })
       install_path = $path }
}
Read-Fact 'ip_addresses' {
    if (Get-Command Get-NetIPAddress -ErrorAction SilentlyContinue) {
        $a = @(Get-NetIPAddress | ForEach-Object { [string]$_.IPAddress })
    } else {
        $a = @(Get-WmiObject -Class Win32_NetworkAdapterConfiguration -Filter 'IPEnabled=True' |
            ForEach-Object { $_.IPAddress } | ForEach-Object { [string]$_ })
    }
    @{ addresses = $a }
}
Read-Fact 'clock' { @{ host_utc = [DateTime]::UtcNow.ToString('o') } }

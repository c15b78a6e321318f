# User Portal web servers: IIS version and ASP.NET v2.0.50727 registration.
Read-Fact 'iis' {
    $k = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\InetStp' -ErrorAction SilentlyContinue
    @{ installed = [bool]$k
       major = $(if ($k) { [int]$k.MajorVersion } else { $null })
       minor = $(if ($k) { [int]$k.MinorVersion } else { $null })
       feature_install_state = (Get-FeatureState 'Web-Server') }
}
Read-Fact 'aspnet_v2' {
    $k = Get-ItemProperty -Path 'HKLM:\SOFTWARE\Microsoft\ASP.NET\2.0.50727.0' -ErrorAction SilentlyContinue
    $exe = Join-Path $env:windir 'Microsoft.NET\Framework64\v2.0.50727\aspnet_regiis.exe'
    if (-not (Test-Path $exe)) { $exe = Join-Path $env:windir 'Microsoft.NET\Framework\v2.0.50727\aspnet_regiis.exe' }
    $lines = @()
    if (Test-Path $exe) {
        $lines = @(& $exe -lv 2>$null | ForEach-Object { ([string]$_).Trim() } | Where-Object { $_ })
    }
    @{ registry_installed = [bool]$k
       path = $(if ($k) { [string]$k.Path } else { $null })
       dll_full_path = $(if ($k) { [string]$k.DllFullPath } else { $null })
       registered_versions = $lines
       feature_install_state = (Get-FeatureState 'Web-Asp-Net') }
}

# Shared by every fact script (prepended by agent.factscripts). Written for PowerShell 4.0 and 5.1.
# Each fact is read in isolation: a failed read becomes {"error": "..."} for that fact only.
$ErrorActionPreference = 'Stop'
# UTF-8 output, without a byte order mark: otherwise stdout is the console's OEM code page (437,
# 866, 932, ...) and a caption such as 'Windows Server 2019 Standard ©' arrives garbled. A host
# without a console handle refuses the setting: its output stays as it was.
try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }
$ProgressPreference = 'SilentlyContinue'
if ($PSVersionTable.PSVersion.Major -lt 3) {
    [Console]::Out.Write('{"_unsupported":"PowerShell ' + $PSVersionTable.PSVersion + ' is too old: 3.0 or later is required"}')
    exit 0
}
$r = @{}
function Read-Fact([string]$Name, [scriptblock]$Body) {
    try { $r[$Name] = @{ value = (& $Body) } }
    catch { $r[$Name] = @{ error = [string]$_.Exception.Message } }
}
function Get-FeatureState([string]$Feature) {
    # Get-WindowsFeature exists on Windows Server only; its absence is a fact (null), not an error.
    if (-not (Get-Command Get-WindowsFeature -ErrorAction SilentlyContinue)) { return $null }
    $f = Get-WindowsFeature -Name $Feature -ErrorAction SilentlyContinue
    if ($f) { return [string]$f.InstallState }
    return $null
}
function Get-ServiceInfo([string]$Service) {
    return Get-WmiObject -Class Win32_Service -Filter "Name='$Service'" -ErrorAction SilentlyContinue
}

# AD FS farm configuration (the same on every node, read on each): authentication policy.
# Farm-wide: the global authentication policy and what each relying party trust requires.
Read-Fact 'adfs_policy' {
    if (-not (Get-Command Get-AdfsGlobalAuthenticationPolicy -ErrorAction SilentlyContinue)) {
        throw 'Get-AdfsGlobalAuthenticationPolicy is not available on this host'
    }
    $g = Get-AdfsGlobalAuthenticationPolicy
    $rule = [string](Get-AdfsAdditionalAuthenticationRule -ErrorAction SilentlyContinue)
    $rps = @(Get-AdfsRelyingPartyTrust | ForEach-Object {
        @{ name = [string]$_.Name; enabled = [bool]$_.Enabled
           identifiers = @($_.Identifier | ForEach-Object { [string]$_ })
           additional_rules = $(if ($_.AdditionalAuthenticationRules) { [string]$_.AdditionalAuthenticationRules } else { $null })
           access_control_policy = $(if ($_.AccessControlPolicyName) { [string]$_.AccessControlPolicyName } else { $null }) } })
    @{ additional_providers = @($g.AdditionalAuthenticationProvider | ForEach-Object { [string]$_ })
       additional_rule = $(if ($rule) { $rule } else { $null })
       relying_parties = $rps }
}
# Farm-wide: extranet (smart) lockout, which keeps password guessing through the proxy from
# locking accounts out in AD.
Read-Fact 'adfs_lockout' {
    $p = Get-AdfsProperties
    $w = $p.ExtranetObservationWindow
    @{ enabled = [bool]$p.ExtranetLockoutEnabled
       threshold = $(if ($null -ne $p.ExtranetLockoutThreshold) { [int]$p.ExtranetLockoutThreshold } else { $null })
       observation_window_minutes = $(if ($w) { [int]$w.TotalMinutes } else { $null })
       mode = $(if ($p.ExtranetLockoutMode) { [string]$p.ExtranetLockoutMode } else { $null }) }
}

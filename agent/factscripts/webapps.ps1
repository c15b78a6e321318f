# Hosts of MFA Server's web applications (User Portal, Mobile App Web Service, Web Service SDK):
# how each is reached (its site's bindings) and how it reaches the Web Service SDK. Only these two
# web.config settings are read: never the SDK account's password.
Read-Fact 'mfa_web_apps' {
    Import-Module WebAdministration -ErrorAction Stop
    @{ apps = @(Get-WebApplication | Where-Object { $_.path -like '/MultiFactorAuth*' } | ForEach-Object {
        $site = [string]$_.GetParentElement().Attributes['name'].Value
        $b = @(Get-WebBinding -Name $site)
        $cfg = Join-Path ([Environment]::ExpandEnvironmentVariables($_.PhysicalPath)) 'web.config'
        $set = @{}
        if (Test-Path $cfg) {
            ([xml](Get-Content -Path $cfg -Raw)).configuration.appSettings.add |
                Where-Object { $_.key -in @('USE_WEB_SERVICE_SDK', 'WEB_SERVICE_SDK_AUTHENTICATION_URL') } |
                ForEach-Object { $set[[string]$_.key] = [string]$_.value }
        }
        @{ site = $site; path = [string]$_.path
           http_bindings = @($b | Where-Object { $_.protocol -eq 'http' } | ForEach-Object { [string]$_.bindingInformation })
           https_bindings = @($b | Where-Object { $_.protocol -eq 'https' } | ForEach-Object { [string]$_.bindingInformation })
           use_web_service_sdk = $set['USE_WEB_SERVICE_SDK']
           sdk_url = $set['WEB_SERVICE_SDK_AUTHENTICATION_URL'] } }) }
}

$r | ConvertTo-Json -Depth 4 -Compress

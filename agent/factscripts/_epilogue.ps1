$r | ConvertTo-Json -Depth 8 -Compress

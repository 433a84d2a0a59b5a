{{/*
The operator's settings a release may set, `operator.<key>` -> its `tenbin run` flag: one entry per field of
tenbin.services.settings.Config (tests/unit/test_settings.py checks this table, the schema and docs/install.md
against it). A key left unset is not passed: the operator's own default holds, written once, in Config.
*/}}
{{- define "tenbin.settingFlags" -}}
resyncSeconds: --resync-seconds
unreachableAfterSeconds: --unreachable-after
deleteGraceSeconds: --delete-grace
historyLimit: --history-limit
statusHeartbeatSeconds: --status-heartbeat
clusterLostAfterSeconds: --cluster-lost-after
pendingTimeoutSeconds: --pending-timeout
maxFailovers: --max-failovers
minMoveIntervalSeconds: --min-move-interval
checkpointGraceSeconds: --checkpoint-grace
migrationTimeoutSeconds: --migration-timeout
maxConcurrentMigrations: --max-concurrent-migrations
maxBackoffSeconds: --max-backoff
dependencyResyncSeconds: --dependency-resync
notServedTtlSeconds: --not-served-ttl
{{- end -}}

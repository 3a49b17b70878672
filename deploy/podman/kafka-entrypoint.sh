#!/bin/sh
# The official apache/kafka image's contract, enough for deploy/compose/compose.yaml: every
# KAFKA_* variable is a server property (KAFKA_LOG_DIRS -> log.dirs; `__` -> `_`, `___` -> `-`),
# except the JVM's own; the storage is formatted with CLUSTER_ID on first start.
set -eu
: "${CLUSTER_ID:?CLUSTER_ID is required}"
props=/opt/kafka/config/server.properties
env | grep '^KAFKA_' | grep -Ev '^KAFKA_(HEAP_OPTS|OPTS|JVM_PERFORMANCE_OPTS|LOG4J_OPTS|GC_LOG_OPTS|JMX_OPTS)=' |
    while IFS='=' read -r name value; do
        key=$(printf '%s' "${name#KAFKA_}" | tr 'A-Z' 'a-z' | sed 's/___/-/g; s/__/@/g; s/_/./g; s/@/_/g')
        printf '%s=%s\n' "$key" "$value"
    done >"$props"
# shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of options
jvm="${KAFKA_HEAP_OPTS:--Xms256m -Xmx256m} -XX:+UseG1GC -Djava.awt.headless=true"
jvm="$jvm -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties"
java $jvm -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format --cluster-id="$CLUSTER_ID" -c "$props" \
    --ignore-formatted
exec java $jvm -cp '/opt/kafka/libs/*' kafka.Kafka "$props"

#!/bin/sh
# The official image's script of this name (the compose file's health check runs it).
exec java -Xmx64m -cp '/opt/kafka/libs/*' -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    org.apache.kafka.tools.BrokerApiVersionsCommand "$@"

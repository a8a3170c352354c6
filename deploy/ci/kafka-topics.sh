#!/bin/sh
# /opt/kafka/bin/kafka-topics.sh of the CI Kafka image: Kafka's TopicCommand,
# as in the official image (same flags).
set -eu
exec java -Xmx256m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' org.apache.kafka.tools.TopicCommand "$@"

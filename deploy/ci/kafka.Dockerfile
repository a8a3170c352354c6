# CI stand-in for the apache/kafka image (no registry is reachable in CI):
# Kafka's jars from Maven Central (scripts/kafka.sh's cache), the host's
# Java runtime with the libraries its ldd names, and a static busybox for
# the shell. It reads the same KAFKA_* environment variables as the official
# image (see kafka-run) and has /opt/kafka/bin/kafka-topics.sh, so
# deploy/compose.ci.yml only swaps `image:`. Built by scripts/compose-smoke.sh.
FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
COPY --chown=1000:1000 varlib/ /var/lib/
ENV PATH=/opt/java/bin:/bin JAVA_HOME=/opt/java
USER 1000:1000
VOLUME ["/var/lib/kafka/data"]
EXPOSE 9092
CMD ["/etc/kafka/docker/run"]

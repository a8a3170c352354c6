# CI stand-in for the prom/prometheus image: Debian's prometheus binary and
# the libraries its ldd names, with the official image's paths and flags
# (config /etc/prometheus/prometheus.yml, data /prometheus, port 9090), so
# deploy/compose.ci.yml only swaps `image:`. Built by scripts/compose-smoke.sh.
FROM scratch
COPY rootfs/ /
COPY --chown=65534:65534 data/ /prometheus/
USER 65534:65534
EXPOSE 9090
VOLUME ["/prometheus"]
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]

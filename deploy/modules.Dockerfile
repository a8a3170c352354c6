# The example modules as an image, for Kubernetes' init container
# (deploy/k8s/base/deployment.yaml): a static busybox copies /examples into
# the pod's modules volume. Built by scripts/image.sh from target/modules.
FROM scratch
COPY busybox /bin/busybox
COPY examples/ /examples/
USER 10001:10001
ENTRYPOINT ["/bin/busybox"]
CMD ["cp", "-r", "/examples/.", "/modules/"]

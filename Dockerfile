# The irlib runtime for the cluster: the wheel without the lab extra, run by a non-root user
# whose only writable places are the evidence volume and /tmp (both mounted by the CronJob
# that `irlib deploy manifests` prints; its root filesystem is read-only).
#
# No container engine runs on our machines, so this is not built here. What the image runs is
# tested instead (tests/e2e/test_cluster.py): the wheel installed in a fresh virtualenv
# outside the checkout, this file's ENV and USER, the CronJob's exact command, and the
# ServiceAccount's token and CA laid out where the kubelet mounts them.
#
#   docker build -t registry.example.com/trading/irlib:0.1.0 .

FROM python:3.11-slim AS wheel
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY irlib ./irlib
COPY notebooks ./notebooks
RUN pip wheel --no-deps --wheel-dir /dist .

FROM python:3.11-slim
COPY --from=wheel /dist /dist
RUN pip install --no-cache-dir /dist/irlib-*.whl && rm -rf /dist \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /tmp irlib
# Everything the kernel and papermill write outside the evidence goes to /tmp (an emptyDir).
ENV HOME=/tmp \
    JUPYTER_RUNTIME_DIR=/tmp/jupyter-runtime \
    JUPYTER_DATA_DIR=/tmp/jupyter-data \
    IPYTHONDIR=/tmp/ipython \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /evidence
CMD ["irlib", "drill", "health", "--profile", "/etc/irlib/profile.yaml", "--outputs", "/evidence"]

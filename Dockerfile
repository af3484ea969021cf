# faultline in a container.
#
#   docker build -t faultline .                      (or: podman build -t faultline .)
#   docker run -d -p 8080:8080 -v faultline-data:/var/lib/faultline \
#     -e FAULTLINE_ADMIN_TOKEN="$(openssl rand -hex 24)" faultline
#
# The image runs `faultline serve` as an unprivileged user with /var/lib/faultline as its data
# volume, listens on $PORT (default 8080; Railway sets it), answers /healthz for the health
# check, and stores what it read and its cursors on SIGTERM (docker stop).

# The images can be swapped (`--build-arg`): `deploy/check-container.sh` builds the final stage
# from a Debian base made with mmdebstrap and a binary built outside (BINARY names an image
# holding /faultline), so it needs no registry.
ARG BUILD_IMAGE=docker.io/library/rust:1-bookworm
ARG BASE_IMAGE=docker.io/library/debian:bookworm-slim
ARG BINARY=build

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin faultline \
    && install -m 0755 target/release/faultline /faultline

FROM ${BINARY} AS binary

FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/faultline --create-home faultline
COPY --from=binary /faultline /usr/local/bin/faultline
COPY deploy/container.toml /etc/faultline/faultline.toml
ENV FAULTLINE_CONFIG=/etc/faultline/faultline.toml
USER faultline
WORKDIR /var/lib/faultline
VOLUME /var/lib/faultline
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${PORT:-8080} && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
# sh only puts $PORT into the address; exec hands the process (and SIGTERM) to faultline.
CMD ["sh", "-c", "exec /usr/local/bin/faultline serve --listen 0.0.0.0:${PORT:-8080}"]

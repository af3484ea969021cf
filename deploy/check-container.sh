#!/usr/bin/env bash
# Builds the container image from the repository's Dockerfile without a registry and checks it
# the way a user runs it: the final stage on a Debian bookworm base made here with mmdebstrap,
# the binary given (default target/debug/faultline) in place of the build stage, buildah with
# chroot isolation (no daemon, no user namespaces). Then it runs the image's own command and
# checks: it runs as the unprivileged user, listens on $PORT, /healthz answers 200, ingest is
# refused without the token, and SIGTERM ends it cleanly.
#
#   deploy/check-container.sh [path/to/faultline]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/faultline}
work=target/container
mkdir -p "$work"
buildah=(buildah --storage-driver vfs)

if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq buildah mmdebstrap >/dev/null
fi

# The base: what debian:bookworm-slim holds, from Debian's own packages.
if ! "${buildah[@]}" inspect --type image localhost/faultline-base:bookworm >/dev/null 2>&1; then
    [ -f "$work/base.tar" ] || mmdebstrap --quiet --variant=minbase bookworm "$work/base.tar"
    printf 'FROM scratch\nADD base.tar /\nCMD ["bash"]\n' > "$work/Containerfile.base"
    "${buildah[@]}" build --quiet --isolation chroot -f "$work/Containerfile.base" \
        -t localhost/faultline-base:bookworm "$work" >/dev/null
fi

# The binary as the build stage would leave it: /faultline.
install -m 0755 "$binary" "$work/faultline"
printf 'FROM scratch\nCOPY faultline /faultline\n' > "$work/Containerfile.binary"
"${buildah[@]}" build --quiet --isolation chroot -f "$work/Containerfile.binary" \
    -t localhost/faultline-binary "$work" >/dev/null

"${buildah[@]}" build --quiet --isolation chroot --layers=false --format docker \
    --build-arg BASE_IMAGE=localhost/faultline-base:bookworm \
    --build-arg BINARY=localhost/faultline-binary \
    -t localhost/faultline:check . >/dev/null
echo "built localhost/faultline:check from the Dockerfile"

# What the image says about itself: user, directory, command, health check.
"${buildah[@]}" inspect --type image localhost/faultline:check > "$work/image.json"
cmd=$(python3 - "$work/image.json" <<'PY'
import json, sys
image = json.load(open(sys.argv[1]))
config = image["Docker"]["config"]
assert config["User"] == "faultline", config["User"]
assert config["WorkingDir"] == "/var/lib/faultline", config["WorkingDir"]
assert "/var/lib/faultline" in config.get("Volumes", {}), config.get("Volumes")
assert "/healthz" in " ".join(image["Docker"]["config"]["Healthcheck"]["Test"]), config["Healthcheck"]
assert config["StopSignal"] == "SIGTERM", config.get("StopSignal")
cmd = config["Cmd"]
assert cmd[:2] == ["sh", "-c"] and "exec /usr/local/bin/faultline serve" in cmd[2], cmd
print(cmd[2])
PY
)
health=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["Docker"]["config"]["Healthcheck"]["Test"]; assert t[:3]==["CMD","bash","-c"], t; print(t[3])' "$work/image.json")
echo "image: user faultline, /var/lib/faultline volume, /healthz check, command: $cmd"

container=$("${buildah[@]}" from --name "faultline-check-$$" localhost/faultline:check)
runner=
cleanup() {
    # A failed check leaves nothing running behind it.
    [ -z "$runner" ] || pkill -TERM -f "faultline serve --listen 0.0.0.0:$port" 2>/dev/null || true
    [ -z "$runner" ] || wait "$runner" 2>/dev/null || true
    "${buildah[@]}" rm "$container" >/dev/null 2>&1 || true
    # Working containers the build's stages leave behind hold a copy of their files each (vfs).
    "${buildah[@]}" containers --format '{{.ContainerName}}' | grep '^faultline-' \
        | xargs -r "${buildah[@]}" rm >/dev/null 2>&1 || true
    "${buildah[@]}" rmi --prune >/dev/null 2>&1 || true
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=check-token-$$-$RANDOM
# The image's own command (sh -c 'exec … --listen 0.0.0.0:${PORT:-8080}'), as its user.
"${buildah[@]}" run --isolation chroot --network host --user faultline \
    --env PORT=$port --env FAULTLINE_ADMIN_TOKEN="$token" --env FAULTLINE_CONFIG=/etc/faultline/faultline.toml \
    --workingdir /var/lib/faultline "$container" -- sh -c "$cmd" > "$work/serve.log" 2>&1 &
runner=$!
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null || { cat "$work/serve.log"; echo "no /healthz" >&2; exit 1; }
refused=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/api/ingest" \
    -H 'content-type: application/x-ndjson' --data-binary '{"level":"error","message":"x"}')
[ "$refused" = 401 ] || { echo "ingest without the token answered $refused" >&2; exit 1; }
stored=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/api/ingest" \
    -H "authorization: Bearer $token" -H 'content-type: application/x-ndjson' \
    --data-binary '{"level":"error","message":"container check"}')
[ "$stored" = 200 ] || { echo "ingest with the token answered $stored" >&2; exit 1; }
# The image's own health check, run inside it.
"${buildah[@]}" run --isolation chroot --network host --env PORT=$port "$container" -- bash -c "$health" \
    || { echo "the image's HEALTHCHECK failed" >&2; exit 1; }
pid=$(pgrep -f "faultline serve --listen 0.0.0.0:$port" | head -n 1)
# exec: faultline itself gets the SIGTERM, not a shell in front of it.
parent=$(ps -o comm= -p "$(ps -o ppid= -p "$pid" | tr -d ' ')")
[ "$parent" != sh ] || { echo "a shell stands between the runtime and faultline" >&2; exit 1; }
user=$(ps -o user= -p "$pid" | tr -d ' ')
[ "$user" = 10001 ] || [ "$user" = faultline ] || { echo "runs as $user, not the faultline user" >&2; exit 1; }
kill -TERM "$pid"
wait "$runner" && status=0 || status=$?
runner=
[ "$status" = 0 ] || { cat "$work/serve.log"; echo "SIGTERM: exit status $status" >&2; exit 1; }
echo "container check passed: user $user, /healthz 200 and the HEALTHCHECK passes, ingest 401 without the token and 200 with it, SIGTERM reaches faultline and it exits cleanly"

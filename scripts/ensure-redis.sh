# Sourced by scripts/test: exports BATCHGATE_TEST_REDIS_URL for a Redis the tests may use.
# Uses the one on 127.0.0.1:6379 when it answers; else starts a private redis-server on a
# free port (installing it with apt-get when missing) and stops it when the caller exits.
redis_answers() {
    python3 - "$1" <<'PY'
import socket, sys
try:
    with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1) as s:
        s.sendall(b"PING\r\n")
        sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
except OSError:
    sys.exit(1)
PY
}
if [ -n "${BATCHGATE_TEST_REDIS_URL:-}" ]; then
    :
elif redis_answers 6379; then
    export BATCHGATE_TEST_REDIS_URL="redis://127.0.0.1:6379/0"
else
    if ! command -v redis-server >/dev/null 2>&1; then
        echo "no Redis on 127.0.0.1:6379 and no redis-server: installing it with apt-get" >&2
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server) >&2
    fi
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    redis_dir=$(mktemp -d)
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --dir "$redis_dir" --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log"
    for _ in $(seq 50); do redis_answers "$port" && break; sleep 0.1; done
    trap 'kill "$(cat "$redis_dir/redis.pid")" 2>/dev/null; rm -rf "$redis_dir"' EXIT
    export BATCHGATE_TEST_REDIS_URL="redis://127.0.0.1:$port/0"
fi
echo "tests use Redis at $BATCHGATE_TEST_REDIS_URL" >&2

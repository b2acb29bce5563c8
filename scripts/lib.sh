# Shared helpers of the scripts: SecantusDB (the MongoDB surrogate used on
# machines without mongod), redis-server, and Chromium and the npm packages
# of the web tests. Sourced, not run.

KAIROS_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KAIROS_VENV="${KAIROS_VENV:-$KAIROS_ROOT/.venv}"
SECANTUS_PIP_VERSION="${SECANTUS_PIP_VERSION:-0.7.0b3}"

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi
}

# Installs redis-server from Debian when it is missing.
ensure_redis() {
  if ! command -v redis-server >/dev/null 2>&1; then
    log "installing redis-server"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq redis-server >/dev/null
  fi
}

# Installs Debian's chromium (driven headless by the GraphiQL browser test)
# when /usr/bin/chromium is missing.
ensure_chromium() {
  if [ ! -x /usr/bin/chromium ]; then
    log "installing chromium"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
  fi
}

# Installs the npm packages of tests/web (`npm ci`, exact versions from its
# package-lock.json) when node_modules is missing or was made from another
# lock file. Never downloads a browser: playwright-core has no install
# step, and scripts are not run anyway.
ensure_web_deps() {
  local dir="$KAIROS_ROOT/tests/web"
  local stamp="$dir/node_modules/.kairos-package-lock.sha256"
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1 ||
    [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
    log "the web tests need node 20 or newer with npm (set KAIROS_WEB_TESTS=0 to skip them)"
    return 1
  fi
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci in tests/web"
    (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

# Installs the npm packages that build the web app (web/, `npm ci` from its
# package-lock.json) when node_modules is missing or was made from another
# lock file. Only scripts/build-web needs them: the build is committed.
ensure_app_deps() {
  local dir="$KAIROS_ROOT/web"
  local stamp="$dir/node_modules/.kairos-package-lock.sha256"
  local want
  want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "npm ci in web"
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
}

# Prints the SecantusDB server command: secantusd-rs when on PATH (fast),
# else secantusd-py from a venv this script makes.
ensure_secantus() {
  if [ -n "${SECANTUSD:-}" ]; then echo "$SECANTUSD"; return; fi
  if command -v secantusd-rs >/dev/null 2>&1; then command -v secantusd-rs; return; fi
  if [ ! -x "$KAIROS_VENV/bin/secantusd-py" ]; then
    log "installing SecantusDB $SECANTUS_PIP_VERSION in $KAIROS_VENV"
    python3 -m venv "$KAIROS_VENV"
    "$KAIROS_VENV/bin/pip" install -q --disable-pip-version-check "SecantusDB==$SECANTUS_PIP_VERSION"
  fi
  echo "$KAIROS_VENV/bin/secantusd-py"
}

# Cargo's target directory as cargo resolves it (CARGO_TARGET_DIR,
# build.target-dir in a config file, else target/ of the workspace).
target_dir() {
  (cd "$KAIROS_ROOT" && cargo metadata --format-version 1 --no-deps) |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])'
}

# A free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# Waits until host:port accepts connections (or fails after $3 seconds).
wait_port() {
  local port=$1 what=$2 limit=${3:-60} i=0
  until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),1)" 2>/dev/null; do
    i=$((i+1))
    if [ "$i" -gt $((limit*5)) ]; then log "$what did not start on port $port"; return 1; fi
    sleep 0.2
  done
}

# Starts SecantusDB on $1 with storage $2 (":memory:" for tests); logs to $3.
# Extra arguments after the log file go to the server (scripts/test adds
# --enable-test-commands for its failpoints; never the demo).
start_secantus() {
  local bin=$1 port=$2 storage=$3 logfile=$4
  shift 4
  "$bin" --host 127.0.0.1 --port "$port" --storage-path "$storage" "$@" >"$logfile" 2>&1 &
  echo $!
}

# Installs nginx from Debian when it is missing (the balancer of
# scripts/cluster and of the rolling-restart test).
ensure_nginx() {
  if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    log "installing nginx"
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nginx >/dev/null
  fi
}

nginx_bin() { command -v nginx 2>/dev/null || echo /usr/sbin/nginx; }

# Starts a Redis Cluster of 3 primaries and 3 replicas on free loopback
# ports (bus ports too), files in $1; appends the pids to `pids` and sets
# REDIS_CLUSTER_URL (every node a seed).
start_redis_cluster() {
  local dir=$1 p bus i nodes=() ports=()
  mkdir -p "$dir"
  for i in 1 2 3 4 5 6; do
    p=$(free_port); bus=$(free_port)
    ports+=("$p"); nodes+=("127.0.0.1:$p")
    redis-server --port "$p" --cluster-port "$bus" --bind 127.0.0.1 --save '' --appendonly no \
      --cluster-enabled yes --cluster-config-file "$dir/nodes-$p.conf" \
      --cluster-node-timeout 2000 --dir "$dir" >"$dir/redis-$p.log" 2>&1 &
    pids+=("$!")
  done
  for p in "${ports[@]}"; do wait_port "$p" "Redis node" 20; done
  redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1 ||
    { cat "$dir/create.log"; return 1; }
  for i in $(seq 300); do
    local ok=1
    for p in "${ports[@]}"; do
      redis-cli -p "$p" cluster info | grep -q cluster_state:ok || ok=0
    done
    [ "$ok" = 1 ] && break
    [ "$i" = 300 ] && { log "the Redis Cluster never became ok"; return 1; }
    sleep 0.1
  done
  REDIS_CLUSTER_URL="redis-cluster://${nodes[0]}?$(printf 'node=%s&' "${nodes[@]:1}")"
  REDIS_CLUSTER_URL="${REDIS_CLUSTER_URL%&}"
}

# Writes the nginx configuration of a deployment into $1/nginx.conf:
# listening on $2, balancing over the ports that follow. Upstream
# connections are not kept alive (a request reaches an instance on a new
# connection, or is refused before it was sent and tried on the next);
# WebSockets are proxied; the client address goes in X-Forwarded-For.
write_nginx_config() {
  local dir=$1 listen=$2; shift 2
  local servers="" p
  for p in "$@"; do servers+="    server 127.0.0.1:$p;"$'\n'; done
  mkdir -p "$dir"
  cat >"$dir/nginx.conf" <<NGINX
daemon off;
master_process on;
worker_processes auto;
pid nginx.pid;
error_log error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path tmp-body;
  proxy_temp_path tmp-proxy;
  fastcgi_temp_path tmp-fastcgi;
  uwsgi_temp_path tmp-uwsgi;
  scgi_temp_path tmp-scgi;
  map \$http_upgrade \$connection_upgrade { default upgrade; '' close; }
  upstream kairos {
$servers  }
  server {
    listen $listen;
    location / {
      proxy_pass http://kairos;
      proxy_http_version 1.1;
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \$connection_upgrade;
      proxy_read_timeout 1h;
    }
  }
}
NGINX
}

# Waits until http://127.0.0.1:$1/ready says 200 (or fails after $2 s).
wait_ready() {
  python3 - "$1" "${2:-60}" <<'PY'
import sys, time, urllib.request
port, limit = sys.argv[1], float(sys.argv[2])
deadline = time.time() + limit
while time.time() < deadline:
    try:
        if urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2).status == 200:
            sys.exit(0)
    except Exception:
        pass
    time.sleep(0.1)
sys.exit(1)
PY
}

# Starts `$1 serve` on a free loopback port with the caller's environment,
# logging to $2/kairos-<port>.log, and waits until it is ready; appends the
# pid to `pids` and sets INSTANCE_PORT and INSTANCE_PID.
start_instance() {
  local bin=$1 dir=$2 port
  port=$(free_port)
  BIND_ADDR="127.0.0.1:$port" "$bin" serve >"$dir/kairos-$port.log" 2>&1 &
  INSTANCE_PID=$!; INSTANCE_PORT=$port; pids+=("$INSTANCE_PID")
  wait_ready "$port" 60 || { log "instance on $port never became ready"; tail -20 "$dir/kairos-$port.log" >&2; return 1; }
}

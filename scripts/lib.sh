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

# Shared helpers of the scripts: SecantusDB (the MongoDB surrogate used on
# machines without mongod) and redis-server. Sourced, not run.

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
start_secantus() {
  local bin=$1 port=$2 storage=$3 logfile=$4
  "$bin" --host 127.0.0.1 --port "$port" --storage-path "$storage" >"$logfile" 2>&1 &
  echo $!
}

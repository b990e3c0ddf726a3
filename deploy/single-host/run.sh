#!/usr/bin/env bash
# Several classifyd replicas on one host behind nginx, scraped by Prometheus, in the foreground.
#
#   deploy/single-host/run.sh --model DIR [--replicas 2] [--first-port 8101]
#       [--listen 127.0.0.1:8080] [--prometheus 127.0.0.1:9090] [--scrape-interval 5s]
#       [--state DIR] [--render-only] [-- EXTRA classifyd serve FLAGS]
#
# Clients talk to nginx (--listen); it spreads requests over the replicas (least connections)
# and retries the model routes on another replica when one is down, draining or full.
# A replica that exits, for whatever reason, is started again after a second, as a process
# manager or Kubernetes would. Ctrl-C or SIGTERM drains every replica, then stops.
#
# Needs classifyd on PATH (or CLASSIFYD_BIN), nginx and prometheus (Debian: nginx-light,
# prometheus). Everything listens where you say; the defaults are loopback only.
# Files under --state: nginx.conf, prometheus.yml, replica-PORT.{log,pid}, events.log,
# targets.json (the replicas Prometheus scrapes), nginx/ (access log with each request's
# upstreams), prometheus-data/. --render-only writes the configuration files and exits, for
# an nginx and a Prometheus of your own.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
MODEL=""
REPLICAS=2
FIRST_PORT=8101
LISTEN=127.0.0.1:8080
PROMETHEUS=127.0.0.1:9090
SCRAPE_INTERVAL=5s
STATE=""
RENDER_ONLY=false
EXTRA=()
CLASSIFYD_BIN=${CLASSIFYD_BIN:-classifyd}
RULES=${CLASSIFYD_RULES:-$(cd "$HERE/../prometheus" && pwd)/classifyd.rules.yml}

usage() {
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}

while (($#)); do
    case $1 in
        --model) MODEL=$2; shift 2 ;;
        --replicas) REPLICAS=$2; shift 2 ;;
        --first-port) FIRST_PORT=$2; shift 2 ;;
        --listen) LISTEN=$2; shift 2 ;;
        --prometheus) PROMETHEUS=$2; shift 2 ;;
        --scrape-interval) SCRAPE_INTERVAL=$2; shift 2 ;;
        --state) STATE=$2; shift 2 ;;
        --render-only) RENDER_ONLY=true; shift ;;
        -h | --help) usage 0 ;;
        --) shift; EXTRA=("$@"); break ;;
        *) echo "run.sh: unknown argument $1" >&2; usage 2 ;;
    esac
done
[[ -n $MODEL || $RENDER_ONLY == true ]] || { echo "run.sh: --model DIR is required" >&2; exit 2; }
[[ $REPLICAS =~ ^[1-9][0-9]*$ ]] || { echo "run.sh: --replicas must be a positive integer" >&2; exit 2; }
if [[ $RENDER_ONLY == false ]]; then
    for tool in "$CLASSIFYD_BIN" nginx prometheus; do
        command -v "$tool" >/dev/null || { echo "run.sh: $tool not found" >&2; exit 2; }
    done
fi
if [[ -z $STATE ]]; then
    STATE=$(mktemp -d "${TMPDIR:-/tmp}/classifyd-single-host.XXXXXX")
fi
mkdir -p "$STATE/nginx" "$STATE/prometheus-data"
STATE=$(cd "$STATE" && pwd)
rm -f "$STATE/stopping"

ports=()
for ((i = 0; i < REPLICAS; i++)); do
    ports+=($((FIRST_PORT + i)))
done

# -- configuration -------------------------------------------------------------------------
servers=""
targets=""
for port in "${ports[@]}"; do
    # max_fails=1: one failed attempt takes the replica out for fail_timeout; the request
    # itself has already been retried elsewhere.
    servers+="        server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'
    targets+="${targets:+, }\"127.0.0.1:$port\""
done
awk -v servers="${servers%$'\n'}" -v state="$STATE" -v listen="$LISTEN" '
    /@UPSTREAM_SERVERS@/ { print servers; next }
    { gsub(/@STATE@/, state); gsub(/@LISTEN@/, listen); print }
' "$HERE/nginx.conf.template" >"$STATE/nginx.conf"
sed -e "s|@SCRAPE_INTERVAL@|$SCRAPE_INTERVAL|g" -e "s|@STATE@|$STATE|g" -e "s|@RULES@|$RULES|" \
    "$HERE/prometheus.yml.template" >"$STATE/prometheus.yml"
printf '[{"targets": [%s]}]\n' "$targets" >"$STATE/targets.json"
if [[ $RENDER_ONLY == true ]]; then
    echo "$STATE/nginx.conf $STATE/prometheus.yml $STATE/targets.json"
    exit 0
fi

log() {
    printf '%s %s\n' "$(date +%s.%N)" "$*" | tee -a "$STATE/events.log" >&2
}

# -- processes -------------------------------------------------------------------------------
# One loop per replica: start it, wait for it, note how it ended, start it again. A replica
# that keeps failing soon after its start (a bad model, a port in use) is retried ever more
# slowly, up to a minute apart, instead of once a second.
supervise() {
    local port=$1 pid rc started backoff=1
    while [[ ! -e $STATE/stopping ]]; do
        started=$SECONDS
        "$CLASSIFYD_BIN" serve --model "$MODEL" --host 127.0.0.1 --port "$port" "${EXTRA[@]}" \
            >>"$STATE/replica-$port.log" 2>&1 &
        pid=$!
        # Written aside and renamed: a reader never sees the file empty.
        echo "$pid" >"$STATE/replica-$port.pid.tmp"
        mv -f "$STATE/replica-$port.pid.tmp" "$STATE/replica-$port.pid"
        log "replica $port started pid=$pid"
        rc=0
        wait "$pid" || rc=$?
        log "replica $port pid=$pid exited rc=$rc"
        [[ -e $STATE/stopping ]] && break
        ((SECONDS - started < 60)) || backoff=1
        sleep "$backoff"
        backoff=$((backoff * 2 > 60 ? 60 : backoff * 2))
    done
}

children=()
stop() {
    trap - INT TERM
    touch "$STATE/stopping"
    log "stopping: draining replicas"
    local port
    for port in "${ports[@]}"; do
        if [[ -s $STATE/replica-$port.pid ]]; then
            kill -TERM "$(cat "$STATE/replica-$port.pid")" 2>/dev/null || true
        fi
    done
    # nginx and Prometheus last, once the replicas have answered what they admitted.
    wait "${children[@]:2}" 2>/dev/null || true
    kill -QUIT "${children[0]}" 2>/dev/null || true
    kill -TERM "${children[1]}" 2>/dev/null || true
    wait 2>/dev/null || true
    log "stopped"
}
trap stop INT TERM

nginx -e "$STATE/nginx/error.log" -c "$STATE/nginx.conf" -g 'daemon off;' &
children+=($!)
prometheus --config.file="$STATE/prometheus.yml" --storage.tsdb.path="$STATE/prometheus-data" \
    --web.listen-address="$PROMETHEUS" --storage.tsdb.retention.time=2d \
    >>"$STATE/prometheus.log" 2>&1 &
children+=($!)
for port in "${ports[@]}"; do
    supervise "$port" &
    children+=($!)
done
log "nginx on $LISTEN, Prometheus on $PROMETHEUS, replicas on ${ports[*]}; state in $STATE"
echo "$$" >"$STATE/run.pid"

# Until a signal (handled by stop) or nginx or Prometheus exits (then stop everything).
while :; do
    wait -n "${children[0]}" "${children[1]}" || true
    [[ -e $STATE/stopping ]] && break
    if ! kill -0 "${children[0]}" 2>/dev/null || ! kill -0 "${children[1]}" 2>/dev/null; then
        log "nginx or Prometheus exited (see $STATE/nginx/error.log, $STATE/prometheus.log)"
        stop
        exit 1
    fi
done

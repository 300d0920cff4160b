#!/usr/bin/env bash
# Server instructions (cachegrind, load-independent) per SUB + UNSUB pair or per published
# message: the server runs under `valgrind --tool=cachegrind --cache-sim=no`, is fed the
# workload and stopped with SIGTERM; the same run without the workload is subtracted.
#
#   benches/instructions.sh pairs <tern> [N]            # default N = 50000
#   benches/instructions.sh msgs <tern> <subs> [MSGS]   # default MSGS = 300000, 16 B each
#
# pairs: one connection sends N pairs "SUB churn.<n>.x <n>\r\nUNSUB <n>\r\n" (distinct n) in
# batches of 500, each followed by PING (waits for the PONG); (Ir(N) - Ir(0)) / N, where the
# Ir(0) run connects and sends one PING alone.
# msgs: `tern bench bench.x --msgs MSGS --size 16 --sub SUBS` against the server (the driver is
# $DRIVER, default <tern> itself); (Ir - Ir(idle start and stop)) / MSGS.
#
# Needs bash (for /dev/tcp) and valgrind. PORT (default 14999) must be free.
set -euo pipefail

mode=${1:?pairs or msgs}
tern=${2:?path to the tern binary}
port=${PORT:-14999}
work=$(mktemp -d)
server=""
trap '[[ -n $server ]] && kill "$server" 2>/dev/null; rm -rf "$work"' EXIT

start_server() {
    valgrind --tool=cachegrind --cache-sim=no --cachegrind-out-file="$work/$1.out" \
        "$tern" -p "$port" -a 127.0.0.1 >"$work/$1.log" 2>&1 &
    server=$!
    for _ in $(seq 600); do
        grep -q "Server is ready" "$work/$1.log" && return
        sleep 0.1
    done
    echo "the server did not start: $(cat "$work/$1.log")" >&2
    exit 1
}

# Stops the server and sets `ir` to the instructions it ran (not in a subshell: it waits).
stop_server() {
    kill -TERM "$server"
    wait "$server" || true
    server=""
    ir=$(awk '/^summary:/ { print $2 }' "$work/$1.out")
}

# One connection: CONNECT, then $1 pairs in batches of 500 + PING (one PING when $1 is 0).
churn() {
    local n=$1 sid=0 batch line
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    read -r line <&3
    printf 'CONNECT {"verbose":false,"pedantic":false}\r\n' >&3
    while :; do
        batch=""
        for ((i = 0; i < 500 && sid < n; i++)); do
            sid=$((sid + 1))
            batch+="SUB churn.$sid.x $sid"$'\r\n'"UNSUB $sid"$'\r\n'
        done
        printf '%sPING\r\n' "$batch" >&3
        while read -r line <&3; do
            [[ $line == PONG* ]] && break
            [[ $line == -ERR* ]] && { echo "server: $line" >&2; exit 1; }
        done
        ((sid < n)) || break
    done
    exec 3>&-
}

case $mode in
pairs)
    n=${3:-50000}
    start_server base && churn 0 && stop_server base && base=$ir
    start_server churn && churn "$n" && stop_server churn && total=$ir
    echo "pairs=$n Ir(0)=$base Ir(N)=$total per_pair=$(((total - base) / n))"
    ;;
msgs)
    subs=${3:?subscribers}
    msgs=${4:-300000}
    start_server idle && stop_server idle && base=$ir
    start_server bench
    "${DRIVER:-$tern}" bench bench.x -s "nats://127.0.0.1:$port" --msgs "$msgs" --size 16 \
        --sub "$subs" --timeout 60s >"$work/bench.txt"
    stop_server bench && total=$ir
    echo "msgs=$msgs subs=$subs Ir(idle)=$base Ir=$total per_msg=$(((total - base) / msgs))"
    ;;
*)
    echo "usage: $0 pairs <tern> [N] | msgs <tern> <subs> [MSGS]" >&2
    exit 2
    ;;
esac

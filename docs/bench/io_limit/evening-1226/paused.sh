#!/bin/bash
# run "$@" with the helper's (nice 19) processes stopped; always continue them
pids=$(ps -eo pid,ni --no-headers | awk '$2==19{print $1}')
kill -STOP $pids 2>/dev/null
trap 'kill -CONT $pids 2>/dev/null' EXIT
sleep 1
"$@"

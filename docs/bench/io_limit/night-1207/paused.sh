#!/bin/bash
# run "$@" with every nice-19 process stopped (three sweeps, 0.5 s apart); continue them at the end
sweep() { pids=$(ps -eo pid,ni --no-headers | awk '$2==19{print $1}'); [ -n "$pids" ] && kill -STOP $pids 2>/dev/null; }
trap 'pids=$(ps -eo pid,ni --no-headers | awk "\$2==19{print \$1}"); kill -CONT $pids 2>/dev/null' EXIT
sweep; sleep 0.5; sweep; sleep 0.5; sweep; sleep 0.5
"$@"

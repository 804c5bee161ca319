# alternate main with the session's start (f0f1207, a `git archive` tree at $BASE):
# dlmm bench --io-limit at 10^8 rows, every nice-19 process stopped for each run
# (../night-1207/paused.sh). Usage: BASE=/tmp/base0 N=4 OUT=/tmp/io7 bash alternate.sh
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# not from a checkout: \`python -m dlmm.cli\` (the bench's fit) puts the working folder
# first on sys.path, before PYTHONPATH's tree
cd /tmp
OUT=${OUT:-/tmp/io7}; mkdir -p "$OUT"; N=${N:-3}; BASE=${BASE:-/tmp/base0}
for i in $(seq 1 $N); do
  for tree in main base; do
    if [ $tree = main ]; then P=/work/main; else P=$BASE; fi
    echo "== $tree $i $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
    "$HERE/../night-1207/paused.sh" env PYTHONPATH=$P /work/main/.venv/bin/dlmm bench --io-limit --sizes 5000000 --data-dir /tmp/dlmm-bench-data --output "$OUT/$tree$i" 2>/dev/null | tail -1
  done
done

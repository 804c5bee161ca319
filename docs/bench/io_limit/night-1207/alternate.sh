# alternate main with f2228fc (this session's start): dlmm bench --io-limit at 10^8 rows,
# every nice-19 process (the helper's) stopped for each run (paused.sh here)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
# Correction (2026-12-08): run from a checkout, the bench's `python -m dlmm.cli fit`
# child imports the checkout, not PYTHONPATH's tree: this script's "base" fits ran main's
# code. Run from elsewhere (../night-1208/alternate.sh does `cd /tmp`).
cd /tmp
OUT=${OUT:-/tmp/io3}
mkdir -p "$OUT"
N=${N:-3}
for i in $(seq 1 $N); do
  for tree in main base; do
    if [ $tree = main ]; then P=/work/main; else P=/tmp/base_f22; fi
    echo "== $tree $i $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
    "$HERE/paused.sh" env PYTHONPATH=$P /work/main/.venv/bin/dlmm bench --io-limit --sizes 5000000 --data-dir /tmp/dlmm-bench-data --output "$OUT/$tree$i" 2>/dev/null | tail -1
  done
done

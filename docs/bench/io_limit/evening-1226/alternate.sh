# alternate main with ae6ad8b (this session's start): dlmm bench --io-limit at 10^8 rows,
# the helper's (nice 19) processes stopped for each run
set -u
cd /tmp/io2
N=${N:-3}
for i in $(seq 1 $N); do
  for tree in main base; do
    if [ $tree = main ]; then P=/work/main; else P=/tmp/base_ae6; fi
    echo "== $tree $i $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
    /tmp/st/paused.sh env PYTHONPATH=$P /work/main/.venv/bin/dlmm bench --io-limit --sizes 5000000 --data-dir /tmp/dlmm-bench-data --output /tmp/io2/$tree$i 2>/dev/null | tail -1
  done
done

# alternate main and b00d834 (this session's start): dlmm bench --io-limit at 10^8 rows
set -u
cd /tmp/io8
for i in 1 2 3; do
  for tree in main base; do
    if [ $tree = main ]; then P=/work/main; else P=/tmp/base_b00; fi
    echo "== $tree $i $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
    PYTHONPATH=$P /work/main/.venv/bin/dlmm bench --io-limit --sizes 5000000 --data-dir /tmp/dlmm-bench-data --output /tmp/io8/$tree$i 2>/dev/null | tail -3
  done
done

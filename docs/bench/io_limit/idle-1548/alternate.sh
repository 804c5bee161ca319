# alternate main and f2f305b: dlmm bench --io-limit at 10^8 rows
set -u
cd /tmp/final/io
for i in 3 4 5; do
  for tree in main base; do
    if [ $tree = main ]; then P=/work/main; else P=/tmp/base_f2f; fi
    echo "== $tree $i $(date -u +%T) $(cut -d' ' -f1-3 /proc/loadavg)"
    PYTHONPATH=$P /work/main/.venv/bin/dlmm bench --io-limit --sizes 5000000 --data-dir /tmp/dlmm-bench-data --output /tmp/final/io/$tree$i 2>/dev/null | tail -1
  done
done

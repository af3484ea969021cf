#!/usr/bin/env bash
# faultline's grouping speed over Drain3's on the same Loghub-2k Content lines, measured in
# alternating pairs (a shared machine's speed drifts; a pair is taken close together), and the
# median ratio of the pairs. Usage: scripts/grouping_ratio.sh [DATA_DIR] [PAIRS]
# Needs `pip install drain3` and a release build (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/loghub-2k}
pairs=${2:-7}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
ratios=()
for _ in $(seq 1 "$pairs"); do
    drain=$(python3 scripts/drain3_bench.py "$data" --rounds 5 | tail -1 | sed -E 's/.*: ([0-9]+) lines\/s$/\1/')
    ours=$(target/release/faultline-bench grouping "$data" --out "$out" --rounds 10 | grep '^grouped' \
        | sed -E 's/.*: ([0-9]+) lines\/s$/\1/')
    ratio=$(python3 -c "print(f'{$ours / $drain:.1f}')")
    echo "drain3 $drain lines/s   faultline $ours lines/s   ${ratio}x"
    ratios+=("$ratio")
done
python3 -c "import statistics, sys; print(f'median {statistics.median(map(float, sys.argv[1:])):.1f}x over {len(sys.argv) - 1} pairs')" "${ratios[@]}"

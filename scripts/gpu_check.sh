#!/usr/bin/env bash
# One prepared GPU check: the paper_gpu suite, the stacked-training and cached-KD benchmarks,
# everything written under one folder to commit.
#
#   scripts/gpu_check.sh --data-root /data           # CIFAR-10 at /data/cifar-10-batches-py
#   scripts/gpu_check.sh --download                  # where there is internet
#   scripts/gpu_check.sh --smoke --device cpu        # rehearsal: tiny budgets, stand-in data
#
# Options:
#   --data-root DIR   where CIFAR-10 lies in torchvision's layout: DIR/cifar-10-batches-py/
#                     (data_batch_1..5, test_batch, batches.meta); env KDDBENCH_DATA also works
#   --download        let kddbench download CIFAR-10 (and fill --data-root, or its default)
#   --out DIR         the folder to commit (default reports/paper_gpu)
#   --device DEV      default cuda
#   --smoke           the suite in smoke mode and the benchmarks at CPU sizes (a rehearsal)
#   --no-install      do not pip-install the package (it is importable already)
#   --skip-suite / --skip-bench   run only one half
#   --step-timeout S  seconds allowed to each step (default 900)
#
# Output (under --out): the suite's report (README.md, results.csv, records/ ...),
# benchmarks/*.json and *.txt, logs/*.log, device.txt and SUMMARY.md with each step's wall
# time and exit code.  Then: git add <out> && git commit -m "GPU check" -- <out>
set -u -o pipefail

OUT=reports/paper_gpu
DEVICE=cuda
DATA_ARGS=()
SMOKE=0
INSTALL=1
SUITE=1
BENCH=1
STEP_TIMEOUT=900
PY=${PYTHON:-python}
ARGS="$*"

die() { echo "gpu_check: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --data-root) [ $# -ge 2 ] || die "--data-root needs a folder"; DATA_ARGS+=(--data-root "$2"); DATA_ROOT=$2; shift 2 ;;
    --download) DATA_ARGS+=(--download); shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT=$2; shift 2 ;;
    --device) [ $# -ge 2 ] || die "--device needs a name"; DEVICE=$2; shift 2 ;;
    --smoke) SMOKE=1; shift ;;
    --no-install) INSTALL=0; shift ;;
    --skip-suite) SUITE=0; shift ;;
    --skip-bench) BENCH=0; shift ;;
    --step-timeout) [ $# -ge 2 ] || die "--step-timeout needs seconds"; STEP_TIMEOUT=$2; shift 2 ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
done

cd "$(dirname "$0")/.." || die "cannot enter the repository"
if [ "$SMOKE" = 0 ] && [ "$SUITE" = 1 ]; then
  root=${DATA_ROOT:-${KDDBENCH_DATA:-$HOME/.cache/kddbench/data}}
  if [[ " ${DATA_ARGS[*]-} " != *" --download "* ]] && [ ! -f "$root/cifar-10-batches-py/data_batch_1" ]; then
    die "CIFAR-10 not found at $root/cifar-10-batches-py (give --data-root DIR, or --download)"
  fi
fi
mkdir -p "$OUT/benchmarks" "$OUT/logs" || die "cannot create $OUT"
SUMMARY="$OUT/SUMMARY.md"
{
  echo "# GPU check"
  echo
  echo "- started: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "- commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (with local changes)')"
  echo "- command: scripts/gpu_check.sh $ARGS"
  echo "- device: $DEVICE; smoke: $SMOKE"
  echo
  echo "| step | exit | wall s |"
  echo "|:--|--:|--:|"
} > "$SUMMARY"

FAILED=0
step() {  # step NAME COMMAND...: run with a timeout, log, and add a line to SUMMARY.md
  local name=$1; shift
  local start end rc
  echo "== $name: $*"
  start=$(date +%s.%N)
  timeout "$STEP_TIMEOUT" "$@" > "$OUT/logs/$name.log" 2>&1
  rc=$?
  end=$(date +%s.%N)
  tail -n 15 "$OUT/logs/$name.log"
  printf '| %s | %s | %s |\n' "$name" "$rc" "$(awk "BEGIN{printf \"%.1f\", $end - $start}")" >> "$SUMMARY"
  [ "$rc" = 0 ] || FAILED=$((FAILED + 1))
  return 0
}

if [ "$INSTALL" = 1 ]; then
  # offline machines: fall back to installing the package alone over what is there
  step install bash -c "$PY -m pip install -e '.[test]' || $PY -m pip install --no-deps --no-build-isolation -e ."
fi
"$PY" -c "import torch, kddbench" 2>/dev/null || die "torch and kddbench must import with $PY"
"$PY" - > "$OUT/device.txt" 2>&1 <<'EOF'
import platform, torch
print("python", platform.python_version(), "torch", torch.__version__)
print("cuda available:", torch.cuda.is_available())
for i in range(torch.cuda.device_count()):
    p = torch.cuda.get_device_properties(i)
    print(f"cuda:{i}", p.name, f"{p.total_memory / 2**30:.0f} GiB")
print("cpu threads:", torch.get_num_threads())
EOF
command -v nvidia-smi > /dev/null && nvidia-smi >> "$OUT/device.txt" 2>&1
cat "$OUT/device.txt"

if [ "$SUITE" = 1 ]; then
  step validate kddbench validate suites/paper_gpu.toml
  if [ "$SMOKE" = 1 ]; then
    step suite kddbench run suites/paper_gpu.toml --smoke --device "$DEVICE" --out "$OUT" --no-progress
  else
    step dry_run kddbench run suites/paper_gpu.toml --dry-run --device "$DEVICE" --out "$OUT" "${DATA_ARGS[@]}"
    step suite kddbench run suites/paper_gpu.toml --device "$DEVICE" --out "$OUT" --no-progress "${DATA_ARGS[@]}"
  fi
fi

if [ "$BENCH" = 1 ]; then
  B="$OUT/benchmarks"
  if [ "$SMOKE" = 1 ]; then
    KD=(--images 256 --rounds 2); ST=(--models 2 --images 32 --epochs 1 --rounds 2 --width 16)
    ACC=(--seeds 1 --epochs 1 --arch 'convnet3[width=16]')
  else
    KD=(--images 16384 --rounds 5 --threads 0 --student convnet3 --batch-size 256)
    ST=(--models 10 --images 100 --epochs 50 --rounds 3 --width 128 --threads 0)
    ACC=(--seeds 3 --epochs 30 --threads 0)
  fi
  step bench_kd_cached bash -c "$PY benchmarks/bench_kd_cached.py --device $DEVICE ${KD[*]} --json $B/kd_cached.json > $B/kd_cached.txt; rc=\$?; cat $B/kd_cached.txt; exit \$rc"
  step bench_stacked_fp32 bash -c "$PY benchmarks/bench_stacked.py speed --device $DEVICE ${ST[*]} --json $B/stacked_fp32.json > $B/stacked_fp32.txt; rc=\$?; cat $B/stacked_fp32.txt; exit \$rc"
  step bench_stacked_bf16 bash -c "$PY benchmarks/bench_stacked.py speed --device $DEVICE ${ST[*]} --precision bf16 --json $B/stacked_bf16.json > $B/stacked_bf16.txt; rc=\$?; cat $B/stacked_bf16.txt; exit \$rc"
  step bench_precision bash -c "$PY benchmarks/bench_stacked.py accuracy --device $DEVICE ${ACC[*]} --json $B/precision.json > $B/precision.txt; rc=\$?; cat $B/precision.txt; exit \$rc"
fi

{
  echo
  echo "- finished: $(date -u +%Y-%m-%dT%H:%M:%SZ); failed steps: $FAILED"
  for f in "$OUT"/benchmarks/*.txt; do
    [ -f "$f" ] || continue
    echo; echo "## $(basename "$f" .txt)"; echo; echo '```'; cat "$f"; echo '```'
  done
} >> "$SUMMARY"
echo "gpu_check: wrote $OUT ($FAILED failed steps); commit it with:"
echo "  git add $OUT && git commit -m 'GPU check: paper_gpu and benchmarks' -- $OUT"
[ "$FAILED" = 0 ] || exit 3

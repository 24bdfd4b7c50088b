#!/usr/bin/env bash
# run.sh measures the generated packages of gen/ and the same networks in
# PyTorch on this machine, one after the other, and prints one markdown table
# (bench/README.md says what is measured and how).
#
#   bench/run.sh                      # preact-resnet-20, -164 and -1001
#   bench/run.sh 20 164               # some of them (20, preact-resnet-20, ...)
#   QUICK=1 bench/run.sh 20           # a smoke test: few steps, seconds
#
# Environment:
#   THREADS=2      cores for both (go test -cpu, torch.set_num_threads)
#   COUNT=5        go test -count
#   OUT=DIR        where the raw outputs go (default: a new directory in /tmp)
#   PYTHON=...     a Python 3 that imports torch (default: the first that does)
#   QUICK=1        -count 2 -benchtime 1x, 2 PyTorch steps: checks the pipeline only
#
# Nothing else should run on the machine meanwhile: both sides use every core.
set -euo pipefail

cd "$(dirname "$0")/.."
THREADS=${THREADS:-2}
COUNT=${COUNT:-5}
QUICK=${QUICK:-0}
OUT=${OUT:-$(mktemp -d /tmp/resnetc-bench.XXXXXX)}
mkdir -p "$OUT"

if [[ -z "${PYTHON:-}" ]]; then
	for p in python3 /usr/bin/python3; do
		if command -v "$p" >/dev/null && "$p" -c 'import torch' 2>/dev/null; then
			PYTHON=$p
			break
		fi
	done
fi
if [[ -z "${PYTHON:-}" ]]; then
	echo "run.sh: no python3 on PATH imports torch; set PYTHON" >&2
	exit 1
fi

nets=()
for a in "${@:-20 164 1001}"; do
	for n in $a; do
		n=${n#preact-resnet-}
		case $n in
		20 | 164 | 1001) nets+=("preact-resnet-$n") ;;
		*)
			echo "run.sh: unknown network '$n'; want 20, 164 or 1001" >&2
			exit 2
			;;
		esac
	done
done

# The tuned PyTorch runs: the allocator keeps freed memory instead of
# returning it to the kernel (no page faults on the next step's tensors),
# OpenMP gets the cores and OpenBLAS none of its own.
tuned_env=(
	OMP_NUM_THREADS="$THREADS"
	OPENBLAS_NUM_THREADS=1
	MALLOC_MMAP_THRESHOLD_=4294967296
	MALLOC_TRIM_THRESHOLD_=4294967296
)
untune=(-u OMP_NUM_THREADS -u MKL_NUM_THREADS -u OPENBLAS_NUM_THREADS -u MALLOC_MMAP_THRESHOLD_ -u MALLOC_TRIM_THRESHOLD_ -u LD_PRELOAD)

# steps NET prints the go test -benchtime and the PyTorch steps and warm-up
# for NET: preact-resnet-1001 trains for minutes a step in PyTorch.
steps() {
	if [[ $QUICK == 1 ]]; then
		echo "1x --steps 2 --warmup 1 --steps-b1 5 --warmup-b1 2"
		return
	fi
	case $1 in
	preact-resnet-20) echo "2s --steps 10 --warmup 3 --steps-b1 50 --warmup-b1 10" ;;
	preact-resnet-164) echo "3x --steps 5 --warmup 2 --steps-b1 30 --warmup-b1 5" ;;
	*) echo "3x --steps 3 --warmup 1 --steps-b1 20 --warmup-b1 5" ;;
	esac
}
if [[ $QUICK == 1 ]]; then COUNT=2; fi

{
	echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "go: $(go version)"
	echo "python: $PYTHON, torch $("$PYTHON" -c 'import torch; print(torch.__version__)')"
	echo "threads: $THREADS, go test -count $COUNT"
	echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD -- gen 2>/dev/null || echo ' (gen/ modified)')"
} | tee "$OUT/machine.txt"

read -r load _ </proc/loadavg
if awk -v l="$load" 'BEGIN { exit !(l > 0.5) }'; then
	echo "run.sh: warning: load average $load: other work on the cores will slow both sides unevenly" >&2
fi

go_files=()
pt_args=()
for net in "${nets[@]}"; do
	read -r benchtime pysteps <<<"$(steps "$net")"
	echo "== $net: go test -bench (-count $COUNT -benchtime $benchtime)"
	go test "./gen/$net" -run '^$' -bench . -timeout 0 -count "$COUNT" -benchtime "$benchtime" -cpu "$THREADS" | tee "$OUT/go-$net.txt"
	go_files+=(--go "$OUT/go-$net.txt")
	if [[ -d "gen/$net-b1" ]]; then
		echo "== $net-b1: go test -bench Infer (-count $COUNT)"
		go test "./gen/$net-b1" -run '^$' -bench Infer -timeout 0 -count "$COUNT" -benchtime 100x -cpu "$THREADS" | tee "$OUT/go-$net-b1.txt"
		go_files+=(--go "$OUT/go-$net-b1.txt")
	fi

	echo "== $net: PyTorch, default settings"
	# shellcheck disable=SC2086 # pysteps is a list of flags
	env "${untune[@]}" "$PYTHON" bench/pytorch_bench.py --nets "$net" --threads "$THREADS" $pysteps \
		--json "$OUT/pt-default-$net.json"
	echo "== $net: PyTorch, tuned: channels_last, jit freeze for inference, ${tuned_env[*]}"
	# shellcheck disable=SC2086
	env "${untune[@]}" "${tuned_env[@]}" "$PYTHON" bench/pytorch_bench.py --nets "$net" --threads "$THREADS" $pysteps \
		--channels-last --jit freeze --json "$OUT/pt-tuned-$net.json"
	echo "== $net: PyTorch, tuned: inference with jit optimize_for_inference (oneDNN), ${tuned_env[*]}"
	# shellcheck disable=SC2086
	env "${untune[@]}" "${tuned_env[@]}" "$PYTHON" bench/pytorch_bench.py --nets "$net" --threads "$THREADS" $pysteps \
		--modes infer,infer1 --jit optimize --json "$OUT/pt-tuned-jit-$net.json"
	pt_args+=(--pytorch "default=$OUT/pt-default-$net.json" --pytorch "tuned=$OUT/pt-tuned-$net.json"
		--pytorch "tuned=$OUT/pt-tuned-jit-$net.json")
done

echo
"$PYTHON" bench/summarize.py "${go_files[@]}" "${pt_args[@]}" | tee "$OUT/table.md"
echo
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg); raw results in $OUT"

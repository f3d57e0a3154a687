#!/usr/bin/env bash
# Submits a sharded `circuitdiff study` or `circuitdiff trajectory` to SLURM: a job array of N
# tasks (shard.sbatch: task I writes WORK/shard-I) and a merge job that starts when every task has
# succeeded (merge.sbatch, --dependency=afterok:<array job>) and writes WORK/KIND. Prints the two
# job ids, "ARRAY_ID MERGE_ID", on stdout; everything else goes to stderr. README.md, "SLURM".
#
# usage: packaging/slurm/submit.sh [OPTIONS] study|trajectory N cpu|cuda WORK ARGS...
#   N        array tasks (shards)
#   cpu      each job gets --cpus-per-task=C and runs with --device cpu --threads C
#   cuda     each job also gets --gres=gpu:1 and runs with --device cuda
#   WORK     a folder on storage that every node sees: WORK/shard-I, WORK/KIND, WORK/logs/
#   ARGS     the arguments of `circuitdiff study` or `circuitdiff trajectory`, without --shard,
#            --out, --device and --threads (which the jobs set); --dtype, --offline and
#            --adapter-base are given to the merge too
# options:
#   --cpus C          CPUs per job (default: 8 on cpu, 4 on cuda)
#   --mem M           memory per job (sbatch --mem, e.g. 32G)
#   --time T          time limit per job (sbatch --time, e.g. 4:00:00)
#   --tasks LIST      submit only these array tasks (e.g. 3 or 1,4-5), to re-run failed ones with
#                     the same arguments; they continue where they stopped, and the new merge job
#                     waits for them
#   --max-running K   at most K array tasks at a time (sbatch --array=…%K)
#   --sbatch OPT      one more sbatch option for both jobs (repeatable), e.g. --sbatch --partition=gpu
# sbatch's own input variables (SBATCH_PARTITION, SBATCH_ACCOUNT, SBATCH_TIMELIMIT, …) apply too.
# The jobs run $CIRCUITDIFF (default: circuitdiff on PATH, resolved here to an absolute path) and
# inherit this environment (--export=ALL): set HF_HOME or HF_HUB_CACHE to the shared model cache.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

usage() {
    sed -n '7,26p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit "$1"
}
die() {
    echo "submit.sh: $*" >&2
    exit 2
}

cpus="" mem="" time_limit="" tasks="" max_running=""
extra=()
while [ $# -gt 0 ]; do
    case $1 in
    --cpus) cpus=${2:?--cpus needs a value}; shift 2 ;;
    --mem) mem=${2:?--mem needs a value}; shift 2 ;;
    --time) time_limit=${2:?--time needs a value}; shift 2 ;;
    --tasks) tasks=${2:?--tasks needs a value}; shift 2 ;;
    --max-running) max_running=${2:?--max-running needs a value}; shift 2 ;;
    --sbatch) extra+=("${2:?--sbatch needs a value}"); shift 2 ;;
    -h | --help) usage 0 ;;
    --) shift; break ;;
    -*) die "unknown option $1 (options come before KIND; see --help)" ;;
    *) break ;;
    esac
done
[ $# -ge 4 ] || usage 2
kind=$1 n=$2 device=$3 work=$4
shift 4

case $kind in
study | trajectory) ;;
*) die "KIND is study or trajectory, not '$kind'" ;;
esac
[[ $n =~ ^[1-9][0-9]*$ ]] || die "N is the number of array tasks, a whole number ≥ 1, not '$n'"
case $device in
cpu) cpus=${cpus:-8} ;;
cuda) cpus=${cpus:-4} ;;
*) die "DEVICE is cpu or cuda, not '$device' (a job sees the GPU it was given as cuda)" ;;
esac
[[ $cpus =~ ^[1-9][0-9]*$ ]] || die "--cpus is a whole number ≥ 1, not '$cpus'"
[ -z "$max_running" ] || [[ $max_running =~ ^[1-9][0-9]*$ ]] || die "--max-running is a whole number ≥ 1, not '$max_running'"

# The array: all tasks, or the listed ones (each below N).
array="0-$((n - 1))"
if [ -n "$tasks" ]; then
    [[ $tasks =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] || die "--tasks is a list such as 3 or 1,4-5, not '$tasks'"
    for t in $(tr ',-' '  ' <<<"$tasks"); do
        [ "$((10#$t))" -lt "$n" ] || die "--tasks: task $t is not one of the $n tasks 0..$((n - 1))"
    done
    array=$tasks
fi
[ -z "$max_running" ] || array="$array%$max_running"

# What the jobs set themselves is refused in ARGS; what the merge needs is copied for it.
merge_args=()
args=("$@")
for ((k = 0; k < ${#args[@]}; k++)); do
    a=${args[k]}
    case $a in
    --shard | --shard=* | --out | --out=* | --device | --device=* | --threads | --threads=*)
        die "leave ${a%%=*} out of the arguments: the jobs set it (--shard I/$n, --out $work/shard-I, --device $device, --threads $cpus)" ;;
    --offline | --dtype=* | --adapter-base=*) merge_args+=("$a") ;;
    --dtype | --adapter-base)
        [ $((k + 1)) -lt ${#args[@]} ] || die "$a needs a value"
        merge_args+=("$a" "${args[k + 1]}")
        k=$((k + 1)) ;;
    esac
done

command -v sbatch >/dev/null || die "sbatch is not on PATH: run this on a SLURM login node"
bin=${CIRCUITDIFF:-circuitdiff}
if resolved=$(command -v "$bin"); then
    [[ $resolved == /* ]] || resolved="$(pwd)/$resolved"
    export CIRCUITDIFF=$resolved
else
    echo "submit.sh: warning: '$bin' is not found here; the jobs will look for it on the nodes' PATH" >&2
    export CIRCUITDIFF=$bin
fi
mkdir -p "$work/logs"
work=$(cd "$work" && pwd)

resources=(--export=ALL --cpus-per-task="$cpus")
[ "$device" = cuda ] && resources+=(--gres=gpu:1)
[ -z "$mem" ] || resources+=(--mem="$mem")
[ -z "$time_limit" ] || resources+=(--time="$time_limit")
resources+=("${extra[@]}")

array_id=$(sbatch --parsable "${resources[@]}" --array="$array" --job-name="circuitdiff-$kind" \
    --output="$work/logs/$kind-%A_%a.out" \
    "$here/shard.sbatch" "$kind" "$n" "$device" "$work" "$@")
array_id=${array_id%%;*}
merge_id=$(sbatch --parsable "${resources[@]}" --dependency="afterok:$array_id" --kill-on-invalid-dep=yes \
    --job-name=circuitdiff-merge --output="$work/logs/merge-%j.out" \
    "$here/merge.sbatch" "$kind" "$n" "$device" "$work" "${merge_args[@]}")
merge_id=${merge_id%%;*}
cat >&2 <<MSG
submit.sh: array job $array_id (tasks $array of $n, $device, $cpus CPUs each) writes $work/shard-I;
submit.sh: merge job $merge_id starts when every task has succeeded and writes $work/$kind
submit.sh: logs in $work/logs; watch with: squeue -j $array_id,$merge_id
submit.sh: if a task fails, the merge job is cancelled; re-run the failed tasks with the same command and --tasks LIST
MSG
echo "$array_id $merge_id"

#!/usr/bin/env bash
# The sbatch workflow against a real Slurm controller on localhost:
#  - slurm/local-cluster.sh installs slurm-wlm and munge from Debian when
#    missing, starts a private munged (own key and socket), slurmctld and
#    slurmd (own slurm.conf, state, spool, logs and ports in a temporary
#    folder, SLURM_CONF points every command at it), one node of 4 CPUs
#    (more than the machine has: SlurmdParameters=config_overrides),
#    partition debug;
#  - a 4-task `srun hostname` job;
#  - slurm/convert.sbatch (the shipped script, slurm/lib.sh's launcher)
#    converts stories260K on 4 ranks (2 stages x 2 replicas), launched by
#    srun with the MPI plugin it finds (PMIx with Debian's Slurm and Open
#    MPI), and again through the mpirun fallback; each output equals the
#    one-process model within 1e-5 (4 ranks add the float64 sums in another
#    order: tests/convert_mpi.sh);
#  - the same job with a longer calibration is cancelled (scancel: SIGTERM)
#    during calibrate[latent]: it ends CANCELLED after saving its progress,
#    no rank keeps running, no output appears; submitted again, it skips
#    RoRoPE (its log says so), resumes the pass and ends bit-identical to an
#    uninterrupted 4-rank run;
#  - the time-limit warning (scancel --batch --signal=USR1, what
#    --signal=B:USR1@T sends): the batch script forwards it, the ranks save,
#    the job is requeued, runs again, resumes, and ends bit-identical too.
# Every daemon is stopped and the temporary folder removed on exit, failure
# included. Set SLURM_LOCAL_KEEP=DIR to keep the job and daemon logs there.
# usage: slurm_local.sh TRANSMLA PYTHON MPIEXEC   (root; apt-get when Slurm is missing)
set -u
bin=$1 py=$2 mpiexec=$3
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
model=$repo/data/models/stories260K
job_script=$repo/slurm/convert.sbatch
export PATH=$PATH:/usr/sbin:/sbin
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
started=$SECONDS
# shellcheck source=tests/lib.sh
. "$here/lib.sh"

# ---- 1.-3. packages; private munged, slurmctld, slurmd (slurm/local-cluster.sh) ----
# shellcheck source=slurm/local-cluster.sh
. "$repo/slurm/local-cluster.sh"
trap local_cluster_stop EXIT
trap 'exit 130' INT TERM
local_cluster_start "$py" || exit 1
work=$LC_WORK node=$LC_NODE
# TM_REPO / TM_BIN reach every job: sbatch exports the environment
export TM_REPO=$repo TM_BIN=$bin

# ---- helpers for the conversion jobs (submit, job_state, wait_job: slurm/local-cluster.sh) ----
job_log() { echo "$work/jobs/tm-convert-$1.log"; }
show_job_log() { [ -f "$1" ] && tail -n 15 "$1" | sed 's/^/      | /'; }
# waits until job $1 runs and its log has a line matching $2; state in $s
caught() {
    local log
    log=$(job_log "$1")
    for _ in $(seq 1200); do
        s=$(job_state "$1")
        [ "$s" = RUNNING ] && grep -qE "$2" "$log" 2>/dev/null && return 0
        case $s in PENDING|CONFIGURING|RUNNING|"") ;; *) break ;; esac
        sleep 0.05
    done
    bad "job $1 not caught at '$2' (state ${s:-unknown})"; show_job_log "$log"
    return 1
}
compare() { # name a b [compare_models args]
    local name=$1 a=$2 b=$3 out; shift 3
    if out=$("$py" "$here/ref/compare_models.py" "$a" "$b" "$@" 2>&1); then ok "$name: $(echo "$out" | tail -n 1)"
    else bad "$name"; echo "$out" | tail -n 5 | sed 's/^/      | /'; fi
}
expect_log() { # log pattern what
    if grep -qE "$2" "$1"; then ok "$3: $(grep -E "$2" "$1" | head -n 1 | cut -c1-160)"
    else bad "$3: no line matching '$2'"; show_job_log "$1"; fi
}

# The conversion every job runs: the bundled stories260K, 2 stages x 2
# replicas on 4 ranks. `slow` calibrates on all 64 windows one per
# micro-batch, so a job can be caught part-way. The rotation fit only: the
# jobs are compared with a one-process run at 1e-5, which the attention
# fit's Adam steps do not keep across replica layouts (convert_mpi checks it
# on its own tolerance).
args=(--model-path "$model" --cal-tokens "$model/calib.u16" --cal-max-seqlen 256 --eval-tokens "$model/calib.u16"
      --cal-nsamples 8 --eval-nsamples 8 --ppl-seqlen 256 --qk-mqa-dim 4 --freqfold 2 --kv-lora-rank 16
      --rorope-fit-nsamples 4 --rorope-fit-steps 10 --fit rotation --skip-published-mla)
slow=(--cal-nsamples 0 --cal-batch-size 1 --eval-batch-size 1)
mpi4() { "$mpiexec" --oversubscribe --allow-run-as-root -np 4 "$bin" convert --quiet "${args[@]}" --stages 2 "$@" >/dev/null; }

# ---- 4. a trivial job, then the conversion script ----
if id=$(submit -n 4 --job-name=hostname --output=hostname-%j.out --wrap="srun hostname"); then
    s=$(wait_job "$id" 60)
    n=$(grep -cx "$node" "$work/jobs/hostname-$id.out" 2>/dev/null)
    if [ "$s" = COMPLETED ] && [ "${n:-0}" -eq 4 ]; then ok "job $id: srun hostname on 4 tasks ($s)"
    else bad "job $id: srun hostname: state $s, $n of 4 lines"; show_job_log "$work/jobs/hostname-$id.out"; fi
else bad "sbatch --wrap 'srun hostname' refused"; fi
ok "srun --mpi=list: $(srun --mpi=list 2>&1 | sed -n 's/^[[:space:]]\+//p' | tr '\n' ' ')"

one=$work/one
"$bin" convert --quiet "${args[@]}" --save-path "$one" >/dev/null || bad "one-process conversion"
run_job() { # name save launcher: submit slurm/convert.sbatch on 4 tasks, wait, compare with the one-process model
    local name=$1 save=$2 id s log
    if ! id=$(TM_LAUNCHER=$3 submit -n 4 "$job_script" "${args[@]}" --stages 2 --save-path "$save"); then
        bad "$name: sbatch refused"; return 1
    fi
    s=$(wait_job "$id" 300)
    log=$(job_log "$id")
    if [ "$s" = COMPLETED ] && [ -f "$save/transmla_report.json" ]; then
        ok "$name: job $id $s, $(grep -o 'launch: .*' "$log" | head -n 1)"
    else bad "$name: job $id ended $s"; show_job_log "$log"; return 1; fi
    # 4 ranks split the calibration windows: float64 sums in another order (tests/convert_mpi.sh)
    compare "$name: equals the one-process conversion (rtol 1e-5)" "$one" "$save" --rtol 1e-5
}
run_job "sbatch slurm/convert.sbatch, 4 tasks, srun" "$work/out_srun" auto
run_job "sbatch slurm/convert.sbatch, 4 tasks, mpirun fallback" "$work/out_mpirun" mpirun

# ---- 5. cancelled part-way, submitted again: continues ----
ref=$work/ref4
mpi4 "${slow[@]}" --save-path "$ref" || bad "4-rank mpirun conversion (slow settings)"
save=$work/out_cancel
if id=$(submit -n 4 "$job_script" "${args[@]}" "${slow[@]}" --stages 2 --save-path "$save"); then
    log=$(job_log "$id")
    if caught "$id" "calibrate\[latent\]: batch 10/"; then
        scancel "$id"
        s=$(wait_job "$id" 60)
        sleep 0.5
        if [ "$s" = CANCELLED ]; then ok "job $id cancelled during calibrate[latent]: $s"
        else bad "job $id after scancel: $s"; show_job_log "$log"; fi
        expect_log "$log" "stopped \(signal 15\): the progress is saved" "job $id saved its progress on SIGTERM"
        if pgrep -f -- "--save-path $save" >/dev/null; then bad "ranks of job $id still running"; else ok "no rank of job $id left running"; fi
        if [ -e "$save" ]; then bad "cancelled job $id left $save"; else ok "cancelled job $id: no output, state in $(basename "$save").work ($(find "$save.work" -name '*.h5' | wc -l) files)"; fi
        if id2=$(submit -n 4 "$job_script" "${args[@]}" "${slow[@]}" --stages 2 --save-path "$save"); then
            s=$(wait_job "$id2" 300)
            log2=$(job_log "$id2")
            if [ "$s" = COMPLETED ]; then ok "resubmitted as job $id2: $s"; else bad "resubmitted job $id2: $s"; show_job_log "$log2"; fi
            expect_log "$log2" "resume: rorope-fit done before" "job $id2 skips what job $id finished"
            expect_log "$log2" "calibrate\[latent\]: resuming at batch" "job $id2 resumes the calibration pass"
            compare "cancelled + resubmitted: bit-identical to an uninterrupted 4-rank run" "$ref" "$save" --exact
        else bad "sbatch (resubmission) refused"; fi
    fi
else bad "sbatch (cancel test) refused"; fi

# ---- 6. the time-limit warning (--signal=B:USR1@T) requeues the job, which continues ----
# scancel --batch --signal=USR1 sends what Slurm sends T seconds before the limit
save=$work/out_requeue
if id=$(submit -n 4 "$job_script" "${args[@]}" "${slow[@]}" --stages 2 --save-path "$save"); then
    log=$(job_log "$id")
    if caught "$id" "calibrate\[keys\]: batch 10/"; then
        scancel --batch --signal=USR1 "$id"
        s=$(wait_job "$id" 300 1)
        restarts=$(job_restarts "$id")
        if [ "$s" = COMPLETED ] && [ "${restarts:-0}" -ge 1 ]; then ok "job $id: USR1 -> saved, requeued, ran again (restarts $restarts): $s"
        else bad "job $id after USR1: state $s, restarts ${restarts:-?}"; show_job_log "$log"; fi
        expect_log "$log" "time limit near" "job $id: the batch script forwarded the warning"
        expect_log "$log" "stopped \(signal 10\): the progress is saved" "job $id: the ranks saved on SIGUSR1"
        expect_log "$log" "requeueing job $id" "job $id: the batch script requeued it once the step had saved"
        expect_log "$log" "\(restart 1\)" "job $id ran again"
        expect_log "$log" "calibrate\[keys\]: resuming at batch" "job $id's second run resumes the calibration pass"
        compare "requeued: bit-identical to an uninterrupted 4-rank run" "$ref" "$save" --exact
    fi
else bad "sbatch (requeue test) refused"; fi

echo "slurm_local: $fails failure(s), $((SECONDS - started))s ($((SECONDS - started - LC_APT_S))s without apt)"
[ "$fails" -eq 0 ]

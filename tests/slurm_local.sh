#!/usr/bin/env bash
# The sbatch workflow against a real Slurm controller on localhost:
#  - installs slurm-wlm and munge from Debian when missing, starts a private
#    munged (own key and socket), slurmctld and slurmd (own slurm.conf, state,
#    spool, logs and ports in a temporary folder, SLURM_CONF points every
#    command at it), one node of 4 CPUs (more than the machine has:
#    SlurmdParameters=config_overrides), partition debug;
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

# ---- 1. packages ----
apt_s=0
missing() { local c; for c in slurmctld slurmd munged munge unmunge sbatch srun sinfo squeue scontrol scancel; do
    command -v "$c" >/dev/null || return 0; done; return 1; }
if missing; then
    t=$SECONDS
    pkgs=(slurm-wlm slurm-client munge)
    apt_log=$(mktemp)
    apt_install() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "${pkgs[@]}" >>"$apt_log" 2>&1; }
    # the packages would start system munged/slurmctld/slurmd (and fail
    # without a slurm.conf); policy-rc.d 101 tells invoke-rc.d not to
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1; fi
    if ! apt_install; then apt-get -o DPkg::Lock::Timeout=300 update >>"$apt_log" 2>&1; apt_install; fi
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    apt_s=$((SECONDS - t))
    if missing; then
        echo "FAIL  could not install ${pkgs[*]} with apt-get (${apt_s}s); last lines of its output:"
        tail -n 15 "$apt_log" | sed 's/^/      | /'
        rm -f "$apt_log"; exit 1
    fi
    rm -f "$apt_log"
    ok "installed ${pkgs[*]} (${apt_s}s)"
fi

# ---- 2./3. private munged, slurmctld, slurmd ----
work=$(mktemp -d)
chmod 711 "$work"                 # munged wants every directory above its socket searchable by all
mkdir -m 755 "$work/munge"
mkdir -p "$work/state" "$work/spool" "$work/jobs"
munged_pid="" ctld_pid="" slurmd_pid=""

show_logs() {
    local f
    for f in munged.log slurmctld.log slurmctld.out slurmd.log slurmd.out; do
        [ -s "$work/$f" ] || continue
        echo "      --- $f (last lines)"
        tail -n 12 "$work/$f" | sed 's/^/      | /'
    done
}
die() { echo "FAIL  $*"; show_logs; exit 1; }
stop_pid() { # pid: TERM, up to 10 s, then KILL
    local p=$1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}
cleanup() {
    local ids
    if [ -n "$ctld_pid" ] && kill -0 "$ctld_pid" 2>/dev/null; then
        ids=$(squeue -h -o %i 2>/dev/null)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086 # one id per word
            scancel $ids 2>/dev/null
            for _ in $(seq 75); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
        fi
    fi
    if [ -n "${SLURM_LOCAL_KEEP:-}" ]; then
        mkdir -p "$SLURM_LOCAL_KEEP" && cp -r "$work"/*.log "$work"/*.out "$work/slurm.conf" "$work/jobs" "$SLURM_LOCAL_KEEP"/ 2>/dev/null
    fi
    stop_pid "$slurmd_pid"
    stop_pid "$ctld_pid"
    stop_pid "$munged_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# munge: a fresh key and a socket of our own, so a system munged (if any) is left alone
if command -v mungekey >/dev/null; then mungekey --create --keyfile="$work/munge.key" 2>"$work/munged.log"
else dd if=/dev/urandom of="$work/munge.key" bs=1024 count=1 2>"$work/munged.log"; fi
chmod 400 "$work/munge.key"
sock=$work/munge/munge.sock
munged --foreground --force --socket="$sock" --key-file="$work/munge.key" --pid-file="$work/munge/munged.pid" \
    --log-file="$work/munged.log" --seed-file="$work/munged.seed" </dev/null >>"$work/munged.log" 2>&1 &
munged_pid=$!
for _ in $(seq 50); do [ -S "$sock" ] && break; kill -0 "$munged_pid" 2>/dev/null || break; sleep 0.1; done
munge -S "$sock" -n 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1 || die "munged did not start (munge -n | unmunge fails)"
ok "munged runs (munge -n | unmunge)"

node=$(hostname -s 2>/dev/null || uname -n)
node=${node%%.*}
# two free TCP ports for slurmctld and slurmd (6817/6818 when python cannot tell)
read -r ctld_port slurmd_port < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' 2>/dev/null || echo 6817 6818)
export SLURM_CONF=$work/slurm.conf
cat >"$SLURM_CONF" <<EOF
ClusterName=tmlocal
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock,cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$work/state
SlurmdSpoolDir=$work/spool
SlurmctldPidFile=$work/slurmctld.pid
SlurmdPidFile=$work/slurmd.pid
SlurmctldLogFile=$work/slurmctld.log
SlurmdLogFile=$work/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
# the node declares 4 CPUs whatever the hardware has (CI: 2 cores)
SlurmdParameters=config_overrides
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
KillWait=5
MinJobAge=600
# a requeued job may start again cred_expire s later (default 120); backfill looks every second
SchedulerParameters=bf_interval=1
NodeName=$node NodeAddr=127.0.0.1 CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4 ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
slurmctld -D -f "$SLURM_CONF" </dev/null >"$work/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -f "$SLURM_CONF" -N "$node" </dev/null >"$work/slurmd.out" 2>&1 &
slurmd_pid=$!
state=""
for _ in $(seq 300); do
    state=$(sinfo -h -o %T 2>/dev/null)
    [ "$state" = idle ] && break
    kill -0 "$ctld_pid" 2>/dev/null || die "slurmctld exited at start"
    kill -0 "$slurmd_pid" 2>/dev/null || die "slurmd exited at start"
    sleep 0.2
done
[ "$state" = idle ] || die "node $node not idle after 60 s (sinfo says '${state:-nothing}')"
ok "slurmctld + slurmd up on ports $ctld_port/$slurmd_port: node $node idle, $(sinfo -h -o %c) CPUs ($(getconf _NPROCESSORS_ONLN) real), in $((SECONDS - started - apt_s))s"

# ---- helpers: submit, state, wait ----
submit() { # sbatch args...: prints the job id (TM_REPO / TM_BIN reach the job: sbatch exports the environment)
    local id
    id=$(TM_REPO=$repo TM_BIN=$bin sbatch --parsable --chdir="$work/jobs" "$@") || return 1
    echo "${id%%;*}"
}
job_state() { scontrol show job -o "$1" 2>/dev/null | sed -n 's/.* JobState=\([A-Z_]*\) .*/\1/p'; }
job_restarts() { scontrol show job -o "$1" 2>/dev/null | sed -n 's/.* Restarts=\([0-9]*\) .*/\1/p'; }
wait_job() { # id timeout_s [min_restarts]: prints the final state (or the last one seen)
    local id=$1 n=$(($2 * 5)) s=""
    while [ "$n" -gt 0 ]; do
        s=$(job_state "$id")
        if [ "$(job_restarts "$id")" -ge "${3:-0}" ]; then
            case $s in COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY|BOOT_FAIL|DEADLINE|PREEMPTED) break ;; esac
        fi
        sleep 0.2; n=$((n - 1))
    done
    echo "${s:-unknown}"
}
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

echo "slurm_local: $fails failure(s), $((SECONDS - started))s ($((SECONDS - started - apt_s))s without apt)"
[ "$fails" -eq 0 ]

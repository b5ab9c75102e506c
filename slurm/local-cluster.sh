#!/usr/bin/env bash
# A private single-node Slurm cluster on localhost, for the tests and the
# benchmarks. Sourced, not run:
#
#   . slurm/local-cluster.sh
#   trap local_cluster_stop EXIT
#   local_cluster_start python3 || exit 1
#   sbatch --chdir="$LC_WORK/jobs" ... / srun / squeue ... as usual
#
# local_cluster_start PYTHON installs slurm-wlm, slurm-client and munge from
# Debian with apt-get when a command is missing (needs root, as do the
# daemons; the packages' own services are kept from starting), then starts a
# private munged (own key and socket, a system munged is left alone),
# slurmctld and slurmd with their own slurm.conf, state, spool, logs and two
# free ports (PYTHON finds them; 6817/6818 when it cannot) in a temporary
# folder: one node declaring 4 CPUs whatever the machine has
# (SlurmdParameters=config_overrides), partition debug. It exports
# SLURM_CONF, so sbatch, srun, squeue, scontrol and scancel reach this
# cluster, and sets
#   LC_WORK    the temporary folder; $LC_WORK/jobs is the jobs' folder
#   LC_NODE    the node's name
#   LC_APT_S   seconds spent in apt-get (0 when nothing was installed)
#   LC_CTLD_PORT, LC_SLURMD_PORT
# It prints one line per step ("ok    ..."; "FAIL  ..." and the daemons' last
# log lines when a step fails) and returns non-zero on failure; it never
# exits. Call it in the shell itself (not in $(...) or a pipeline): the
# daemons are that shell's children.
#
# local_cluster_stop cancels the jobs left, copies the daemon and job logs
# to $SLURM_LOCAL_KEEP when set, stops the daemons and removes LC_WORK; safe
# to call twice, or when the start failed part-way.
#
# Helpers, once started (TM_REPO / TM_BIN and any other variable reach the
# job when the caller exports them: sbatch passes the environment on):
#   submit SBATCH_ARGS...       sbatch --parsable in $LC_WORK/jobs; prints the job id
#   job_state ID                JobState (PENDING, RUNNING, COMPLETED, ...)
#   job_restarts ID             how many times the job was requeued
#   wait_job ID TIMEOUT_S [MIN_RESTARTS]
#                               waits for a final state (after MIN_RESTARTS
#                               requeues); prints it, or the last state seen

# sbin holds the daemons
case ":$PATH:" in *:/usr/sbin:*) ;; *) export PATH=$PATH:/usr/sbin:/sbin ;; esac
: "${LC_WORK:=}" "${LC_NODE:=}" "${LC_APT_S:=0}" "${LC_CTLD_PORT:=}" "${LC_SLURMD_PORT:=}"
: "${LC_MUNGED_PID:=}" "${LC_CTLD_PID:=}" "${LC_SLURMD_PID:=}"

local_cluster_ok() { echo "ok    $*"; }

# Prints the FAIL line and the daemons' last log lines; returns 1.
local_cluster_fail() { echo "FAIL  $*"; local_cluster_show_logs; return 1; }

local_cluster_show_logs() {
    local f
    [ -n "$LC_WORK" ] || return 0
    for f in munged.log slurmctld.log slurmctld.out slurmd.log slurmd.out; do
        [ -s "$LC_WORK/$f" ] || continue
        echo "      --- $f (last lines)"
        tail -n 12 "$LC_WORK/$f" | sed 's/^/      | /'
    done
}

# Succeeds when a command of Slurm or munge is missing.
local_cluster_missing() {
    local c
    for c in slurmctld slurmd munged munge unmunge sbatch srun sinfo squeue scontrol scancel; do
        command -v "$c" >/dev/null || return 0
    done
    return 1
}

local_cluster_apt() { # log packages...
    local log=$1; shift
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@" >>"$log" 2>&1
}

# apt-get install of the packages when a command is missing; LC_APT_S its seconds.
local_cluster_install() {
    local t=$SECONDS pkgs=(slurm-wlm slurm-client munge) log own_policy=""
    LC_APT_S=0
    local_cluster_missing || return 0
    log=$(mktemp)
    # the packages would start system munged/slurmctld/slurmd (and fail
    # without a slurm.conf); policy-rc.d 101 tells invoke-rc.d not to
    if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own_policy=1; fi
    if ! local_cluster_apt "$log" "${pkgs[@]}"; then
        apt-get -o DPkg::Lock::Timeout=300 update >>"$log" 2>&1
        local_cluster_apt "$log" "${pkgs[@]}"
    fi
    if [ -n "$own_policy" ]; then rm -f /usr/sbin/policy-rc.d; fi
    LC_APT_S=$((SECONDS - t))
    if local_cluster_missing; then
        echo "FAIL  could not install ${pkgs[*]} with apt-get (${LC_APT_S}s); last lines of its output:"
        tail -n 15 "$log" | sed 's/^/      | /'
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    local_cluster_ok "installed ${pkgs[*]} (${LC_APT_S}s)"
}

# munged with a fresh key and a socket of our own, so a system munged (if any) is left alone
local_cluster_munged() {
    local sock=$LC_WORK/munge/munge.sock
    if command -v mungekey >/dev/null; then mungekey --create --keyfile="$LC_WORK/munge.key" 2>"$LC_WORK/munged.log"
    else dd if=/dev/urandom of="$LC_WORK/munge.key" bs=1024 count=1 2>"$LC_WORK/munged.log"; fi
    chmod 400 "$LC_WORK/munge.key"
    munged --foreground --force --socket="$sock" --key-file="$LC_WORK/munge.key" --pid-file="$LC_WORK/munge/munged.pid" \
        --log-file="$LC_WORK/munged.log" --seed-file="$LC_WORK/munged.seed" </dev/null >>"$LC_WORK/munged.log" 2>&1 &
    LC_MUNGED_PID=$!
    for _ in $(seq 50); do [ -S "$sock" ] && break; kill -0 "$LC_MUNGED_PID" 2>/dev/null || break; sleep 0.1; done
    munge -S "$sock" -n 2>/dev/null | unmunge -S "$sock" >/dev/null 2>&1 ||
        { local_cluster_fail "munged did not start (munge -n | unmunge fails)"; return 1; }
    local_cluster_ok "munged runs (munge -n | unmunge)"
}

# slurm.conf for one node of 4 CPUs on localhost: $SLURM_CONF
local_cluster_conf() {
    cat >"$SLURM_CONF" <<EOF
ClusterName=tmlocal
SlurmctldHost=$LC_NODE(127.0.0.1)
SlurmctldPort=$LC_CTLD_PORT
SlurmdPort=$LC_SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$LC_WORK/munge/munge.sock,cred_expire=10
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$LC_WORK/state
SlurmdSpoolDir=$LC_WORK/spool
SlurmctldPidFile=$LC_WORK/slurmctld.pid
SlurmdPidFile=$LC_WORK/slurmd.pid
SlurmctldLogFile=$LC_WORK/slurmctld.log
SlurmdLogFile=$LC_WORK/slurmd.log
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
NodeName=$LC_NODE NodeAddr=127.0.0.1 CPUs=4 Boards=1 SocketsPerBoard=1 CoresPerSocket=4 ThreadsPerCore=1 RealMemory=1000 State=UNKNOWN
PartitionName=debug Nodes=$LC_NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

# local_cluster_start PYTHON: see the top of this file.
local_cluster_start() {
    local py=${1:-python3} t0=$SECONDS state=""
    if [ -n "$LC_WORK" ]; then echo "FAIL  local cluster already started in $LC_WORK"; return 1; fi
    local_cluster_install || return 1
    LC_WORK=$(mktemp -d) || { echo "FAIL  mktemp -d"; return 1; }
    chmod 711 "$LC_WORK"                 # munged wants every directory above its socket searchable by all
    mkdir -m 755 "$LC_WORK/munge"
    mkdir -p "$LC_WORK/state" "$LC_WORK/spool" "$LC_WORK/jobs"
    local_cluster_munged || return 1

    LC_NODE=$(hostname -s 2>/dev/null || uname -n)
    LC_NODE=${LC_NODE%%.*}
    # two free TCP ports for slurmctld and slurmd (6817/6818 when python cannot tell)
    read -r LC_CTLD_PORT LC_SLURMD_PORT < <("$py" -c '
import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])' 2>/dev/null || echo 6817 6818)
    export SLURM_CONF=$LC_WORK/slurm.conf
    local_cluster_conf
    slurmctld -D -f "$SLURM_CONF" </dev/null >"$LC_WORK/slurmctld.out" 2>&1 &
    LC_CTLD_PID=$!
    slurmd -D -f "$SLURM_CONF" -N "$LC_NODE" </dev/null >"$LC_WORK/slurmd.out" 2>&1 &
    LC_SLURMD_PID=$!
    for _ in $(seq 300); do
        state=$(sinfo -h -o %T 2>/dev/null)
        [ "$state" = idle ] && break
        kill -0 "$LC_CTLD_PID" 2>/dev/null || { local_cluster_fail "slurmctld exited at start"; return 1; }
        kill -0 "$LC_SLURMD_PID" 2>/dev/null || { local_cluster_fail "slurmd exited at start"; return 1; }
        sleep 0.2
    done
    [ "$state" = idle ] || { local_cluster_fail "node $LC_NODE not idle after 60 s (sinfo says '${state:-nothing}')"; return 1; }
    local_cluster_ok "slurmctld + slurmd up on ports $LC_CTLD_PORT/$LC_SLURMD_PORT: node $LC_NODE idle, $(sinfo -h -o %c) CPUs ($(getconf _NPROCESSORS_ONLN) real), in $((SECONDS - t0 - LC_APT_S))s"
}

local_cluster_stop_pid() { # pid: TERM, up to 10 s, then KILL
    local p=$1
    [ -n "$p" ] && kill -0 "$p" 2>/dev/null || return 0
    kill -TERM "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$p" 2>/dev/null && kill -KILL "$p" 2>/dev/null
    wait "$p" 2>/dev/null
    return 0
}

# local_cluster_stop: see the top of this file.
local_cluster_stop() {
    local ids
    if [ -n "$LC_CTLD_PID" ] && kill -0 "$LC_CTLD_PID" 2>/dev/null; then
        ids=$(squeue -h -o %i 2>/dev/null)
        if [ -n "$ids" ]; then
            # shellcheck disable=SC2086 # one id per word
            scancel $ids 2>/dev/null
            for _ in $(seq 75); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
        fi
    fi
    if [ -n "${SLURM_LOCAL_KEEP:-}" ] && [ -n "$LC_WORK" ]; then
        mkdir -p "$SLURM_LOCAL_KEEP" && cp -r "$LC_WORK"/*.log "$LC_WORK"/*.out "$LC_WORK/slurm.conf" "$LC_WORK/jobs" "$SLURM_LOCAL_KEEP"/ 2>/dev/null
    fi
    local_cluster_stop_pid "$LC_SLURMD_PID"
    local_cluster_stop_pid "$LC_CTLD_PID"
    local_cluster_stop_pid "$LC_MUNGED_PID"
    LC_SLURMD_PID="" LC_CTLD_PID="" LC_MUNGED_PID=""
    if [ -n "$LC_WORK" ]; then rm -rf "$LC_WORK"; fi
    LC_WORK=""
    return 0
}

# ---- helpers: submit, state, wait ----
submit() { # sbatch args...: prints the job id (the exported environment reaches the job)
    local id
    id=$(sbatch --parsable --chdir="$LC_WORK/jobs" "$@") || return 1
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

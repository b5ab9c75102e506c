#!/usr/bin/env bash
# Shared by the sbatch scripts in this folder: start MPI ranks and log.
# Sourced, not run.

# Log a line with a timestamp on stderr (the job's log).
tm_log() { printf '%s transmla-job: %s\n' "$(date '+%F %T')" "$*" >&2; }

# The command that starts MPI ranks on every task of the allocation, in the
# array TM_LAUNCH. srun is the launcher (with the PMIx plugin when Slurm has
# one, else PMI-2); where srun cannot start MPI ranks (no MPI plugin), Open
# MPI's mpirun is used inside the allocation. TM_LAUNCHER=srun|mpirun forces one.
tm_launcher() {
    local launcher=${TM_LAUNCHER:-auto} mpi=""
    if [ "$launcher" = auto ]; then
        launcher=mpirun
        if command -v srun >/dev/null 2>&1 && [ -n "${SLURM_JOB_ID:-}" ]; then
            local plugins
            plugins=$(srun --mpi=list 2>&1 || true)
            if printf '%s' "$plugins" | grep -qw pmix; then launcher=srun mpi=pmix
            elif printf '%s' "$plugins" | grep -qw pmi2; then launcher=srun mpi=pmi2
            fi
        fi
    fi
    if [ "$launcher" = srun ]; then
        tm_log "launch: srun --mpi=${mpi:-default} (${SLURM_NTASKS:-?} tasks on ${SLURM_JOB_NUM_NODES:-?} nodes)"
        TM_LAUNCH=(srun ${mpi:+--mpi=$mpi} --kill-on-bad-exit=1)
    else
        if [ "${TM_LAUNCHER:-auto}" = mpirun ]; then tm_log "launch: mpirun -np ${SLURM_NTASKS:-1} (TM_LAUNCHER=mpirun)"
        else tm_log "launch: mpirun -np ${SLURM_NTASKS:-1} (srun has no MPI plugin here)"; fi
        TM_LAUNCH=(mpirun --oversubscribe --allow-run-as-root -np "${SLURM_NTASKS:-1}")
    fi
}

# Start "$@" on every task and wait for it.
tm_launch() {
    tm_launcher
    "${TM_LAUNCH[@]}" "$@"
}

# Forward the warning Slurm sends before the time limit (--signal=B:USR1@T)
# to the running step as SIGUSR1 (srun and mpirun both pass USR1 on to the
# ranks): `transmla convert` then saves its progress in SAVE.work and exits
# with status 75. tm_run_step then requeues the job (--requeue): the next run
# of the same command continues from SAVE.work. (Requeueing at once would end
# the step before its ranks have saved and said so.)
tm_on_time_limit() {
    tm_log "time limit near (SIGUSR1): stopping the step, which saves its progress"
    TM_TIME_LIMIT=1
    if [ -n "${TM_STEP_PID:-}" ]; then kill -USR1 "$TM_STEP_PID" 2>/dev/null || true; fi
}

# Start "$@" on every task in the background, so the USR1 trap can act while
# the step runs, and wait. Exit status 75: the step stopped on a signal and
# saved its progress; after a time-limit warning the job is requeued.
tm_run_step() {
    TM_TIME_LIMIT=0
    trap tm_on_time_limit USR1
    # scancel and the time limit send SIGTERM to every process, ranks included;
    # mpirun would kill its ranks 1 s later, before they have saved
    export OMPI_MCA_odls_base_sigkill_timeout=${OMPI_MCA_odls_base_sigkill_timeout:-60}
    tm_launcher
    "${TM_LAUNCH[@]}" "$@" &
    TM_STEP_PID=$!
    local rc=0
    wait "$TM_STEP_PID" || rc=$?
    # a trapped signal interrupts wait: wait again for the step's real status
    while kill -0 "$TM_STEP_PID" 2>/dev/null; do wait "$TM_STEP_PID" || rc=$?; done
    # `transmla finetune` checkpoints and exits 0 on the signal (TM_REQUEUE_ON_SUCCESS=1 in its scripts): after a
    # time-limit warning its job is requeued too; a requeued run with no steps left only exports the model again
    if [ "$rc" -eq 0 ] && [ "$TM_TIME_LIMIT" = 1 ] && [ "${TM_REQUEUE_ON_SUCCESS:-0}" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
        tm_log "the step checkpointed after the time-limit warning; requeueing job $SLURM_JOB_ID"
        scontrol requeue "$SLURM_JOB_ID" || tm_log "scontrol requeue failed"
    fi
    if [ "$rc" -eq 75 ]; then
        tm_log "the step stopped on a signal and saved its progress; the same command continues from it"
        if [ "$TM_TIME_LIMIT" = 1 ] && [ -n "${SLURM_JOB_ID:-}" ]; then
            tm_log "requeueing job $SLURM_JOB_ID"
            scontrol requeue "$SLURM_JOB_ID" || tm_log "scontrol requeue failed"
        fi
    fi
    return "$rc"
}

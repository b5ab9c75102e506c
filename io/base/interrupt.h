/* Stop requests: SIGTERM (scancel, a job's end) and SIGUSR1 (Slurm's
 * --signal warning before the time limit) only set a flag; long loops look
 * at it where their state is consistent, save it and return, so a killed
 * job loses at most one micro-batch or one layer of work. */
#ifndef TM_IO_INTERRUPT_H
#define TM_IO_INTERRUPT_H

/* Catch SIGTERM and SIGUSR1 from now on (idempotent). */
void tm_interrupt_install(void);
/* The signal that asked this process to stop, or 0. */
int tm_interrupt_signal(void);
/* Ask to stop as if `sig` had arrived (tests). */
void tm_interrupt_request(int sig);

#endif

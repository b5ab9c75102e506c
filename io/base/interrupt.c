#include "io/base/interrupt.h"

#include <signal.h>
#include <string.h>

static volatile sig_atomic_t requested;

static void on_signal(int sig) {
    if (!requested) requested = sig;
}

void tm_interrupt_install(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART; /* blocking calls resume; the flag is read between steps */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

int tm_interrupt_signal(void) { return requested; }

void tm_interrupt_request(int sig) { on_signal(sig); }

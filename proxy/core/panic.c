/* panic.c - invariants that always run (see panic.h) */
#include "panic.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void panic_at(const char *file, int line, const char *what)
{
	/* Standard error reaches the terminal with -f and the journal under
	 * systemd; a supervisor also logs its worker's death by SIGABRT. */
	fprintf(stderr, "starttlsd: panic: %s:%d: invariant broken: %s\n", file, line, what);
	abort();
}

/* panic.h - invariants that always run
 *
 * assert() vanishes under -DNDEBUG. A proxy that holds other people's mail
 * must not go on with a broken invariant (a queue past its end, a buffer
 * written beyond its room): it stops loudly instead (Postfix's msg_panic).
 * Only internal inconsistencies panic; what a peer sends never does
 * (STYLE.md, the three kinds of failure).
 */
#ifndef STARTTLSD_PANIC_H
#define STARTTLSD_PANIC_H

/* panic_at - report WHAT at FILE:LINE on standard error and abort */
_Noreturn void panic_at(const char *file, int line, const char *what);

/* PANIC_UNLESS - abort the process unless COND holds, in every build */
#define PANIC_UNLESS(cond) ((cond) ? (void)0 : panic_at(__FILE__, __LINE__, #cond))

#endif

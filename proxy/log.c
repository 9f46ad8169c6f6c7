/* log.c - logging: stderr in the foreground, syslog (facility mail) otherwise
 *
 * The two settings are written once at start-up, before the event loop runs.
 */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>

static bool log_to_stderr = true;
static enum log_level log_threshold = LOG_LEVEL_INFO;

static const struct {
	const char *name;
	int priority;
} levels[] = {
	[LOG_LEVEL_ERROR] = { "error", LOG_ERR },
	[LOG_LEVEL_WARNING] = { "warning", LOG_WARNING },
	[LOG_LEVEL_INFO] = { "info", LOG_INFO },
	[LOG_LEVEL_DEBUG] = { "debug", LOG_DEBUG },
};

void log_setup(bool to_stderr, enum log_level threshold)
{
	log_to_stderr = to_stderr;
	log_threshold = threshold;
	if (!to_stderr)
		openlog("starttlsd", LOG_PID | LOG_NDELAY, LOG_MAIL);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;
	if (level > log_threshold)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof line, fmt, ap);
	va_end(ap);
	if (log_to_stderr)
		fprintf(stderr, "starttlsd: %s: %s\n", levels[level].name, line);
	else
		syslog(levels[level].priority, "%s: %s", levels[level].name, line);
}

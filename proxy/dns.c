/* dns.c - validating DNS lookups for a worker (see dns.h) */
#include "dns.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "file_read.h"
#include "log.h"

struct dns {
	struct ub_ctx *ctx;
	struct ev_loop *loop;
	ev_io io;
};

/* anchor_line - LINE (NUL-terminated, comment cut) holds a DS or DNSKEY
 * record in one line */
static bool anchor_line(const char *line)
{
	char copy[4096];
	snprintf(copy, sizeof copy, "%s", line);
	for (char *save = NULL, *w = strtok_r(copy, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
		if (strcmp(w, "DS") == 0 || strcmp(w, "DNSKEY") == 0)
			return true;
	return false;
}

char *dns_anchors_load(const struct config_listener *l, const char *filename, char *err, size_t errlen)
{
	/* The default file has no line of its own: the dane line names it. */
	int line = l->dns_trust_anchor_line ? l->dns_trust_anchor_line : l->dane_line;
	struct file_blob text;
	char why[1200];
	if (!file_read(l->dns_trust_anchor, &text, why, sizeof why)) {
		snprintf(err, errlen, "%s:%d: dns_trust_anchor %s: %s%s", filename, line, l->dns_trust_anchor, why,
		         l->dns_trust_anchor_line ? "" : " (install dns-root-data, or set dns_trust_anchor)");
		return NULL;
	}
	char *out = calloc(1, text.len + 2);
	size_t n = 0, records = 0;
	const char *problem = NULL;
	for (char *save = NULL, *s = out ? strtok_r(text.data, "\n", &save) : NULL; s && !problem;
	     s = strtok_r(NULL, "\n", &save)) {
		char *semicolon = strchr(s, ';');
		if (semicolon)
			*semicolon = '\0';
		s += strspn(s, " \t\r");
		size_t len = strlen(s);
		while (len > 0 && strchr(" \t\r", s[len - 1]))
			s[--len] = '\0';
		if (len == 0)
			continue;
		if (strchr(s, '(') || !anchor_line(s)) {
			problem = "every line must be one DS or DNSKEY record (zone file form, no parentheses)";
			break;
		}
		memcpy(out + n, s, len + 1);
		n += len + 1;
		records++;
	}
	file_blob_wipe(&text);
	if (!out || problem || records == 0) {
		snprintf(err, errlen, "%s:%d: dns_trust_anchor %s: %s", filename, line, l->dns_trust_anchor,
		         !out ? "out of memory" : problem ? problem : "no DS or DNSKEY record in it");
		free(out);
		return NULL;
	}
	return out;
}

static void on_ready(struct ev_loop *loop, ev_io *w, int revents)
{
	struct dns *d = w->data;
	(void)loop;
	(void)revents;
	int r = ub_process(d->ctx);
	if (r != 0)
		log_error("DNS: %s", ub_strerror(r));
}

struct dns *dns_new(struct ev_loop *loop, const struct config_listener *l, const char *anchors, char *err,
                    size_t errlen)
{
	struct dns *d = calloc(1, sizeof *d);
	if (!d || !(d->ctx = ub_ctx_create())) {
		snprintf(err, errlen, "out of memory");
		free(d);
		return NULL;
	}
	d->loop = loop;
	/* A thread, not a process: the worker's memory and descriptors stay its own. */
	int r = ub_ctx_async(d->ctx, 1);
	const char *what = "async";
	if (r == 0) {
		what = l->dns_resolver[0] ? "dns_resolver" : "/etc/resolv.conf";
		r = l->dns_resolver[0] ? ub_ctx_set_fwd(d->ctx, l->dns_resolver) : ub_ctx_resolvconf(d->ctx, NULL);
	}
	for (const char *a = anchors; r == 0 && *a; a += strlen(a) + 1) {
		what = "dns_trust_anchor";
		r = ub_ctx_add_ta(d->ctx, a);
	}
	if (r != 0) {
		snprintf(err, errlen, "%s: %s", what, ub_strerror(r));
		ub_ctx_delete(d->ctx);
		free(d);
		return NULL;
	}
	int fd = ub_fd(d->ctx);
	if (fd < 0) {
		snprintf(err, errlen, "libunbound gave no descriptor to watch");
		ub_ctx_delete(d->ctx);
		free(d);
		return NULL;
	}
	ev_io_init(&d->io, on_ready, fd, EV_READ);
	d->io.data = d;
	ev_io_start(loop, &d->io);
	return d;
}

void dns_free(struct dns *d)
{
	if (!d)
		return;
	ev_io_stop(d->loop, &d->io);
	ub_ctx_delete(d->ctx);
	free(d);
}

bool dns_lookup(struct dns *d, const char *name, int rrtype, dns_done_fn *done, void *arg, int *id_r,
                const char **why_r)
{
	int r = ub_resolve_async(d->ctx, name, rrtype, 1 /* IN */, arg, done, id_r);
	if (r != 0) {
		*why_r = ub_strerror(r);
		return false;
	}
	return true;
}

void dns_cancel(struct dns *d, int id)
{
	(void)ub_cancel(d->ctx, id);
}

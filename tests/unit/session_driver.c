/* session_driver.c - a tiny edge for unit tests (see session_driver.h) */
#include "session_driver.h"

#include <assert.h>
#include <string.h>

static const char *const action_names[] = {
	[ACT_NONE] = "NONE",
	[ACT_CLOSE_NOW] = "CLOSE_NOW",
	[ACT_DROP_BACKEND] = "DROP_BACKEND",
	[ACT_START_TLS] = "START_TLS",
	[ACT_CLOSE_AFTER_FLUSH] = "CLOSE_AFTER_FLUSH",
	[ACT_DOMAIN_POLICY] = "DOMAIN_POLICY",
};

void driver_init(struct driver *d, const struct session_policy *policy)
{
	memset(d, 0, sizeof *d);
	session_init(&d->s, policy);
}

/* drain - move session output into the collected strings */
static bool drain(struct driver *d)
{
	size_t n;
	bool moved = false;
	const uint8_t *p = session_output_to_client(&d->s, &n);
	if (n > 0) {
		assert(d->to_client_len + n <= sizeof d->to_client);
		memcpy(d->to_client + d->to_client_len, p, n);
		d->to_client_len += n;
		session_sent_to_client(&d->s, n);
		moved = true;
	}
	p = session_output_to_backend(&d->s, &n);
	if (n > 0) {
		assert(d->to_backend_len + n <= sizeof d->to_backend);
		memcpy(d->to_backend + d->to_backend_len, p, n);
		d->to_backend_len += n;
		session_sent_to_backend(&d->s, n);
		moved = true;
	}
	return moved;
}

/* apply_actions - record actions; START_TLS drops unread plaintext as conn.c does */
static void apply_actions(struct driver *d)
{
	enum session_action a;
	while ((a = session_next_action(&d->s)) != ACT_NONE) {
		if (d->actions[0])
			strncat(d->actions, " ", sizeof d->actions - strlen(d->actions) - 1);
		strncat(d->actions, action_names[a], sizeof d->actions - strlen(d->actions) - 1);
		if (a == ACT_START_TLS) {
			d->client_in_len = 0;
			d->tls_pending = true;
		}
		if (a == ACT_CLOSE_NOW || a == ACT_CLOSE_AFTER_FLUSH)
			d->closed = true;
	}
}

/* feed - offer buffered input to one side; true when some was used */
static bool feed(uint8_t *in, size_t *len, size_t (*fn)(struct session *, const uint8_t *, size_t),
                 struct session *s)
{
	if (*len == 0)
		return false;
	size_t used = fn(s, in, *len);
	assert(used <= *len);
	memmove(in, in + used, *len - used);
	*len -= used;
	return used > 0;
}

void driver_pump(struct driver *d)
{
	for (int rounds = 0; rounds < 100000; rounds++) {
		bool moved = false;
		/* Backend first, then the client, then actions: the core must
		 * hold its invariants without the edge's help (a STARTTLS
		 * reply and the client bytes after it in one round). */
		if (!d->closed)
			moved |= feed(d->backend_in, &d->backend_in_len, session_from_backend, &d->s);
		if (!d->closed && !d->tls_pending)
			moved |= feed(d->client_in, &d->client_in_len, session_from_client, &d->s);
		apply_actions(d);
		moved |= drain(d);
		if (!moved)
			return;
	}
	assert(!"driver_pump does not settle");
}

/* arrive - append input and pump, whole or a byte at a time */
static bool arrive(struct driver *d, uint8_t *in, size_t *len, const void *p, size_t n, bool trickle)
{
	const uint8_t *bytes = p;
	size_t step = trickle ? 1 : n;
	for (size_t off = 0; off < n; off += step) {
		size_t k = n - off < step ? n - off : step;
		if (*len + k > DRIVER_INPUT_CAP)
			return false;
		memcpy(in + *len, bytes + off, k);
		*len += k;
		driver_pump(d);
	}
	if (n == 0)
		driver_pump(d);
	return true;
}

bool driver_client(struct driver *d, const void *p, size_t n, bool trickle)
{
	if (d->tls_pending)
		return true; /* the edge is handshaking: these would be TLS bytes */
	return arrive(d, d->client_in, &d->client_in_len, p, n, trickle);
}

bool driver_backend(struct driver *d, const void *p, size_t n, bool trickle)
{
	return arrive(d, d->backend_in, &d->backend_in_len, p, n, trickle);
}

void driver_take(struct driver *d, char *client_r, size_t *client_len_r, char *backend_r,
                 size_t *backend_len_r, char *actions_r, size_t actions_cap)
{
	memcpy(client_r, d->to_client, d->to_client_len);
	*client_len_r = d->to_client_len;
	memcpy(backend_r, d->to_backend, d->to_backend_len);
	*backend_len_r = d->to_backend_len;
	strncpy(actions_r, d->actions, actions_cap - 1);
	actions_r[actions_cap - 1] = '\0';
	d->to_client_len = d->to_backend_len = 0;
	d->actions[0] = '\0';
}

/* domain_policy.c - decisions per recipient domain (see domain_policy.h) */
#include "domain_policy.h"

#include <string.h>

static uint8_t lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
}

static bool is_ldh(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-';
}

/* skip_quoted - past a quoted local part starting at P[I] (RFC 5321
 * section 4.1.2 Quoted-string, backslash escapes); false when unterminated */
static bool skip_quoted(const uint8_t *p, size_t len, size_t *i)
{
	for (size_t j = *i + 1; j < len; j++) {
		if (p[j] == '\\') {
			j++;
		} else if (p[j] == '"') {
			*i = j + 1;
			return true;
		}
	}
	return false;
}

/* copy_domain - the domain P (LEN bytes) checked and lowered into NAME */
static bool copy_domain(const uint8_t *p, size_t len, char name[DOMAIN_NAME_MAX])
{
	if (len > 0 && p[len - 1] == '.')
		len--; /* a fully qualified name's root dot */
	if (len == 0 || len > 253)
		return false;
	for (size_t i = 0; i < len; i++) {
		bool dot = p[i] == '.';
		if (!dot && !is_ldh(p[i]))
			return false;
		if (dot && (i == 0 || i == len - 1 || p[i - 1] == '.'))
			return false; /* an empty label */
		name[i] = (char)lower(p[i]);
	}
	name[len] = '\0';
	return true;
}

bool rcpt_domain(const uint8_t *args, size_t len, char name[DOMAIN_NAME_MAX])
{
	static const char to[] = "TO:";
	if (len < 3)
		return false;
	for (size_t i = 0; i < 3; i++)
		if (lower(args[i]) != lower((uint8_t)to[i]))
			return false;
	size_t i = 3;
	while (i < len && args[i] == ' ')
		i++; /* "TO: <a@b>", which many servers take */
	if (i == len || args[i] != '<')
		return false;
	i++;
	/* A source route (RFC 5321 section 4.1.2 A-d-l) is ignored, as
	 * section C allows: "<@relay1,@relay2:user@domain>". */
	if (i < len && args[i] == '@') {
		const uint8_t *colon = memchr(args + i, ':', len - i);
		if (!colon)
			return false;
		i = (size_t)(colon - args) + 1;
	}
	if (i < len && args[i] == '"') {
		if (!skip_quoted(args, len, &i))
			return false;
	} else {
		while (i < len && args[i] != '@' && args[i] != '>' && args[i] != '"' && args[i] != ' ')
			i++;
	}
	if (i == len || args[i] != '@')
		return false; /* "<Postmaster>", "<>" or no domain */
	size_t start = ++i;
	while (i < len && args[i] != '>')
		i++;
	if (i == len || start == i || args[start] == '[')
		return false; /* unterminated, empty, or an address literal */
	return copy_domain(args + start, i - start, name);
}

bool dns_wire_name(const uint8_t *p, size_t n, char name[DOMAIN_NAME_MAX], size_t *used_r)
{
	size_t i = 0, out = 0;
	for (;;) {
		if (i >= n)
			return false;
		uint8_t label = p[i++];
		if (label == 0)
			break;
		if (label > 63 || label > n - i)
			return false; /* a compression pointer, or cut short */
		if (out + (out > 0) + label > 253)
			return false;
		if (out > 0)
			name[out++] = '.';
		for (uint8_t k = 0; k < label; k++, i++) {
			if (!is_ldh(p[i]) && p[i] != '_')
				return false;
			name[out++] = (char)lower(p[i]);
		}
	}
	name[out] = '\0';
	*used_r = i;
	return true;
}

void domain_decisions_init(struct domain_decisions *d)
{
	memset(d, 0, sizeof *d);
}

bool domain_decisions_find(const struct domain_decisions *d, const char *name, enum domain_verdict *verdict_r)
{
	for (size_t i = 0; i < d->n_known; i++) {
		if (strcmp(d->known[i].name, name) == 0) {
			*verdict_r = d->known[i].verdict;
			return true;
		}
	}
	return false;
}

void domain_decisions_add(struct domain_decisions *d, const char *name, enum domain_verdict verdict)
{
	struct domain_decision *slot;
	if (d->n_known < DOMAIN_DECISIONS_MAX) {
		slot = &d->known[d->n_known++];
	} else {
		slot = &d->known[d->oldest];
		d->oldest = (d->oldest + 1) % DOMAIN_DECISIONS_MAX;
	}
	size_t len = strnlen(name, DOMAIN_NAME_MAX - 1);
	memcpy(slot->name, name, len);
	slot->name[len] = '\0';
	slot->verdict = verdict;
}

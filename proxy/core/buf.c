/* buf.c - bounded byte buffer */
#include "buf.h"

#include <string.h>

#include "panic.h"

void buf_init(struct buf *b, uint8_t *storage, size_t cap)
{
	b->data = storage;
	b->cap = cap;
	b->rd = 0;
	b->wr = 0;
}

bool buf_valid(const struct buf *b)
{
	return b->data != NULL && b->rd <= b->wr && b->wr <= b->cap;
}

/* compact - move pending bytes to the front so all free space is at the end */
static void compact(struct buf *b)
{
	if (b->rd == 0)
		return;
	size_t pending = buf_pending(b);
	memmove(b->data, b->data + b->rd, pending);
	b->rd = 0;
	b->wr = pending;
}

bool buf_append(struct buf *b, const void *p, size_t n)
{
	PANIC_UNLESS(buf_valid(b));
	if (n > buf_room(b))
		return false;
	if (b->cap - b->wr < n)
		compact(b);
	memcpy(b->data + b->wr, p, n);
	b->wr += n;
	return true;
}

bool buf_append_str(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

void buf_consume(struct buf *b, size_t n)
{
	PANIC_UNLESS(buf_valid(b) && n <= buf_pending(b));
	b->rd += n;
	if (b->rd == b->wr)
		b->rd = b->wr = 0;
}

uint8_t *buf_tail_space(struct buf *b, size_t *len_r)
{
	PANIC_UNLESS(buf_valid(b));
	compact(b);
	*len_r = b->cap - b->wr;
	return b->data + b->wr;
}

void buf_commit(struct buf *b, size_t n)
{
	PANIC_UNLESS(n <= b->cap - b->wr);
	b->wr += n;
}

void buf_reset(struct buf *b)
{
	b->rd = b->wr = 0;
}

/* buf.h - bounded byte buffer with read and write cursors
 *
 * Invariant (buf_valid): rd <= wr <= cap. Bytes [rd, wr) are pending.
 * The storage is inline so that a buffer's memory is known when it is
 * declared; nothing here ever allocates.
 */
#ifndef STARTTLSD_BUF_H
#define STARTTLSD_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf {
	size_t cap;
	size_t rd;
	size_t wr;
	uint8_t *data;
};

/* buf_init - use STORAGE of CAP bytes, empty */
void buf_init(struct buf *b, uint8_t *storage, size_t cap);

/* buf_valid - the cursor invariant holds */
bool buf_valid(const struct buf *b);

/* buf_pending - bytes written and not yet consumed */
static inline size_t buf_pending(const struct buf *b) { return b->wr - b->rd; }

/* buf_head - first pending byte */
static inline const uint8_t *buf_head(const struct buf *b) { return b->data + b->rd; }

/* buf_room - bytes that can still be appended (after compacting) */
static inline size_t buf_room(const struct buf *b) { return b->cap - buf_pending(b); }

/* buf_append - append N bytes; false (and nothing written) when they do not fit */
bool buf_append(struct buf *b, const void *p, size_t n);

/* buf_append_str - append a NUL-terminated string */
bool buf_append_str(struct buf *b, const char *s);

/* buf_consume - drop N pending bytes from the front */
void buf_consume(struct buf *b, size_t n);

/* buf_tail_space - make the free space contiguous at the end and return it */
uint8_t *buf_tail_space(struct buf *b, size_t *len_r);

/* buf_commit - mark N bytes written into the space buf_tail_space returned */
void buf_commit(struct buf *b, size_t n);

/* buf_reset - drop everything pending */
void buf_reset(struct buf *b);

#endif

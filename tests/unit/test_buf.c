/* test_buf.c - the bounded buffer: fills, drains, refuses overfill */
#include <string.h>

#include "buf.h"
#include "harness.h"

void run_buf_tests(void)
{
	uint8_t storage[8];
	struct buf b;
	size_t len;

	buf_init(&b, storage, sizeof storage);
	CHECK(buf_valid(&b) && buf_pending(&b) == 0 && buf_room(&b) == 8, "empty");
	CHECK(buf_append(&b, "abcde", 5), "append 5");
	CHECK(!buf_append(&b, "xyzw", 4), "overfill refused");
	CHECK(buf_pending(&b) == 5, "overfill wrote nothing");
	buf_consume(&b, 3);
	CHECK_BYTES(buf_head(&b), buf_pending(&b), "de", 2, "after consume");
	CHECK(buf_append(&b, "fghijk", 6), "append wraps by compacting");
	CHECK_BYTES(buf_head(&b), buf_pending(&b), "defghijk", 8, "compacted");
	CHECK(buf_room(&b) == 0 && !buf_append(&b, "z", 1), "full");
	buf_consume(&b, 8);
	CHECK(b.rd == 0 && b.wr == 0, "empty resets cursors");
	uint8_t *tail = buf_tail_space(&b, &len);
	CHECK(len == 8, "tail space whole");
	memcpy(tail, "12", 2);
	buf_commit(&b, 2);
	CHECK_BYTES(buf_head(&b), buf_pending(&b), "12", 2, "commit");
	buf_reset(&b);
	CHECK(buf_pending(&b) == 0 && buf_valid(&b), "reset");
}

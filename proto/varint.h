/* Protobuf base-128 varints, for the places that frame protobuf bytes by hand: block record
 * framing, the zero-copy chunk prefix and the server's pass-through query batches. */
#ifndef TV_VARINT_H
#define TV_VARINT_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>

#define TV_VARINT_MAX_BYTES 10

/* Writes v at p (room for TV_VARINT_MAX_BYTES) and returns the bytes written. */
static inline size_t tv_varint_put(uint8_t *p, uint64_t v)
{
	size_t n = 0;

	while (v >= 0x80) {
		p[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (uint8_t)v;
	return n;
}

/* Reads a varint from at most avail bytes at p. Returns 0 with *v and *used set, or -EBADMSG
 * when it is cut off or longer than TV_VARINT_MAX_BYTES. */
static inline int tv_varint_get(const uint8_t *p, size_t avail, uint64_t *v, size_t *used)
{
	uint64_t x = 0;

	for (size_t i = 0; i < avail && i < TV_VARINT_MAX_BYTES; i++) {
		x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			*used = i + 1;
			return 0;
		}
	}
	return -EBADMSG;
}

#endif

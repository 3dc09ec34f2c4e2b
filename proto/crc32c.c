/* CRC32C over ISA-L: hardware-accelerated where the CPU has it, a table otherwise.
 * ISA-L's crc32_iscsi takes and returns the raw register, so the ~ pre/post steps live here. */
#include "proto/crc32c.h"

#include <isa-l/crc.h>

uint32_t tv_crc32c_extend(uint32_t crc, const void *buf, size_t len)
{
	/* crc32_iscsi takes an int length: feed huge buffers in pieces. */
	const unsigned char *p = buf;
	uint32_t reg = ~crc;

	while (len > 0) {
		int n = len > (1u << 30) ? (1 << 30) : (int)len;

		reg = crc32_iscsi((unsigned char *)p, n, reg);
		p += n;
		len -= (size_t)n;
	}
	return ~reg;
}

uint32_t tv_crc32c(const void *buf, size_t len)
{
	return tv_crc32c_extend(0, buf, len);
}

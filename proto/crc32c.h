/* CRC32C (Castagnoli), the checksum of every chunk and block on the wire and on disk.
 * A thin name over ISA-L's crc32_iscsi so both sides compute it one way. */
#ifndef TV_CRC32C_H
#define TV_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Standard CRC32C of buf (init ~0, final xor ~0): "123456789" -> 0xE3069283. */
uint32_t tv_crc32c(const void *buf, size_t len);

/* Continue a CRC32C over more bytes: tv_crc32c_extend(tv_crc32c(a), b) == tv_crc32c(a||b). */
uint32_t tv_crc32c_extend(uint32_t crc, const void *buf, size_t len);

#endif

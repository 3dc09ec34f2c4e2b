/* splitmix64's finaliser, shared by the sampler (connection hash) and the TCP reassembler
 * (connection ids): a bijective mix, so distinct inputs spread over all 64 bits. */
#ifndef TV_MIX64_H
#define TV_MIX64_H

#include <stdint.h>

static inline uint64_t tv_mix64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return x;
}

#endif

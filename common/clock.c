/* The two clocks of common/clock.h, read with clock_gettime (vDSO: no syscall). Both clock ids
 * exist on every Linux, so a failure cannot happen and is not reported. */
#include "common/clock.h"


static uint64_t clock_ns(clockid_t id)
{
	struct timespec ts;

	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * TV_NS_PER_S + (uint64_t)ts.tv_nsec;
}

uint64_t tv_realtime_ns(void)
{
	return clock_ns(CLOCK_REALTIME);
}

uint64_t tv_monotonic_ns(void)
{
	return clock_ns(CLOCK_MONOTONIC);
}

struct timespec tv_timespec_from_ns(uint64_t ns)
{
	return (struct timespec){.tv_sec = (time_t)(ns / TV_NS_PER_S),
				 .tv_nsec = (long)(ns % TV_NS_PER_S)};
}

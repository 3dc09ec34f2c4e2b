/* Clocks both binaries read, in nanoseconds: wall-clock time for record and catalog stamps
 * (CLOCK_REALTIME, what users' --from/--to mean) and monotonic time for deadlines and the
 * kernel's event stamps (CLOCK_MONOTONIC, what bpf_ktime_get_ns returns). */
#ifndef TV_COMMON_CLOCK_H
#define TV_COMMON_CLOCK_H

#include <stdint.h>
#include <time.h>

#define TV_NS_PER_S 1000000000ull
#define TV_NS_PER_MS 1000000ull

/* Nanoseconds since the Unix epoch (CLOCK_REALTIME). */
uint64_t tv_realtime_ns(void);
/* Nanoseconds since boot, never going back (CLOCK_MONOTONIC). */
uint64_t tv_monotonic_ns(void);
/* ns as a struct timespec, for the absolute deadlines of pthread_cond_timedwait (on the clock
 * the condition variable was created with: CLOCK_REALTIME unless set otherwise). Only the
 * client's write room uses it today; it lives beside the clocks it converts. */
struct timespec tv_timespec_from_ns(uint64_t ns);

#endif

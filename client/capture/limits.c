/* capture/limits.h's objects, built from the one definition of each bound: bpf/tv_event.h
 * (shared with the kernel side, which sizes its buffers by them), the kernel's IFNAMSIZ, and
 * capture/limits.h's own for the packet ring and the run's duration. */
#include "capture/limits.h"

#include <net/if.h>

#include "bpf/tv_event.h"
#include "capture/sockfilter.h"

const struct tv_limit tv_capture_payload_bytes_limit = {.min = 1, .max = TV_CAPTURE_PAYLOAD_BYTES};
const struct tv_limit tv_capture_body_bytes_limit = {.min = 0, .max = TV_CAPTURE_PAYLOAD_BYTES};
const struct tv_limit tv_capture_ring_bytes_limit = {
	.min = TV_CAPTURE_MIN_RING_BYTES,
	.max = TV_CAPTURE_MAX_RING_BYTES,
	.pow2 = true,
};
const struct tv_limit tv_capture_sockfilter_ring_bytes_limit = {
	.min = TV_CAPTURE_SOCKFILTER_RING_BLOCK_BYTES,
	.max = TV_CAPTURE_MAX_RING_BYTES,
	.pow2 = true,
};
const struct tv_limit tv_capture_comm_bytes_limit = {.min = 1, .max = TV_CAPTURE_COMM_BYTES - 1};
const struct tv_limit tv_capture_interface_bytes_limit = {.min = 1, .max = IFNAMSIZ - 1};
const struct tv_limit tv_capture_duration_ms_limit = {.min = 1, .max = TV_CAPTURE_MAX_DURATION_MS};

/* the defaults must be values the limits accept */
_Static_assert(TV_CAPTURE_DEFAULT_PAYLOAD_BYTES <= TV_CAPTURE_PAYLOAD_BYTES, "payload default");
_Static_assert(TV_CAPTURE_RING_BYTES >= TV_CAPTURE_MIN_RING_BYTES &&
		       TV_CAPTURE_RING_BYTES <= TV_CAPTURE_MAX_RING_BYTES &&
		       (TV_CAPTURE_RING_BYTES & (TV_CAPTURE_RING_BYTES - 1)) == 0,
	       "ring default");
_Static_assert(TV_SOCKFILTER_RING_BYTES >= TV_CAPTURE_SOCKFILTER_RING_BLOCK_BYTES &&
		       TV_SOCKFILTER_RING_BYTES <= TV_CAPTURE_MAX_RING_BYTES &&
		       (TV_SOCKFILTER_RING_BYTES & (TV_SOCKFILTER_RING_BYTES - 1)) == 0,
	       "sockfilter ring default");
_Static_assert(TV_CAPTURE_SOCKFILTER_RING_BLOCK_BYTES >= TV_CAPTURE_MIN_RING_BYTES,
	       "a sockfilter ring is a tracepoint-valid ring too");

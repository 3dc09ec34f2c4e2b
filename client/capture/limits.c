/* capture/limits.h's objects, built from the one definition of each bound: bpf/tv_event.h
 * (shared with the kernel side, which sizes its buffers by them). */
#include "capture/limits.h"

#include "bpf/tv_event.h"

const struct tv_limit tv_capture_payload_bytes_limit = {.min = 1, .max = TV_CAPTURE_PAYLOAD_BYTES};
const struct tv_limit tv_capture_ring_bytes_limit = {
	.min = TV_CAPTURE_MIN_RING_BYTES,
	.max = TV_CAPTURE_MAX_RING_BYTES,
	.pow2 = true,
};
const struct tv_limit tv_capture_comm_bytes_limit = {.min = 1, .max = TV_CAPTURE_COMM_BYTES - 1};

/* both defaults must be values the limits accept */
_Static_assert(TV_CAPTURE_DEFAULT_PAYLOAD_BYTES <= TV_CAPTURE_PAYLOAD_BYTES, "payload default");
_Static_assert(TV_CAPTURE_RING_BYTES >= TV_CAPTURE_MIN_RING_BYTES &&
		       TV_CAPTURE_RING_BYTES <= TV_CAPTURE_MAX_RING_BYTES &&
		       (TV_CAPTURE_RING_BYTES & (TV_CAPTURE_RING_BYTES - 1)) == 0,
	       "ring default");

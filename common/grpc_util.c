/* The gRPC helpers of common/grpc_util.h: status names, integer channel arguments,
 * completion-queue shutdown. */
#include "common/grpc_util.h"

#include <grpc/support/time.h>

static const char *const STATUS_NAMES[] = {
	[GRPC_STATUS_OK] = "OK",
	[GRPC_STATUS_CANCELLED] = "CANCELLED",
	[GRPC_STATUS_UNKNOWN] = "UNKNOWN",
	[GRPC_STATUS_INVALID_ARGUMENT] = "INVALID_ARGUMENT",
	[GRPC_STATUS_DEADLINE_EXCEEDED] = "DEADLINE_EXCEEDED",
	[GRPC_STATUS_NOT_FOUND] = "NOT_FOUND",
	[GRPC_STATUS_ALREADY_EXISTS] = "ALREADY_EXISTS",
	[GRPC_STATUS_PERMISSION_DENIED] = "PERMISSION_DENIED",
	[GRPC_STATUS_RESOURCE_EXHAUSTED] = "RESOURCE_EXHAUSTED",
	[GRPC_STATUS_FAILED_PRECONDITION] = "FAILED_PRECONDITION",
	[GRPC_STATUS_ABORTED] = "ABORTED",
	[GRPC_STATUS_OUT_OF_RANGE] = "OUT_OF_RANGE",
	[GRPC_STATUS_UNIMPLEMENTED] = "UNIMPLEMENTED",
	[GRPC_STATUS_INTERNAL] = "INTERNAL",
	[GRPC_STATUS_UNAVAILABLE] = "UNAVAILABLE",
	[GRPC_STATUS_DATA_LOSS] = "DATA_LOSS",
	[GRPC_STATUS_UNAUTHENTICATED] = "UNAUTHENTICATED",
};
/* a code added to grpc/status.h must get its name here */
_Static_assert(sizeof(STATUS_NAMES) / sizeof(STATUS_NAMES[0]) == GRPC_STATUS_UNAUTHENTICATED + 1,
	       "one name per gRPC status code");

const char *tv_grpc_status_name(grpc_status_code code)
{
	if ((unsigned)code < sizeof(STATUS_NAMES) / sizeof(STATUS_NAMES[0]))
		return STATUS_NAMES[code];
	return "UNKNOWN_STATUS";
}

void tv_grpc_cq_destroy(grpc_completion_queue *cq)
{
	if (!cq)
		return;
	grpc_completion_queue_shutdown(cq);
	/* with nothing outstanding the next event is the shutdown itself */
	while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
	       GRPC_QUEUE_SHUTDOWN)
		;
	grpc_completion_queue_destroy(cq);
}

grpc_arg tv_grpc_int_arg(const char *key, int value)
{
	/* grpc_arg's key is not const in 1.51, though grpc only reads it */
	grpc_arg a = { .type = GRPC_ARG_INTEGER, .key = (char *)key };

	a.value.integer = value;
	return a;
}

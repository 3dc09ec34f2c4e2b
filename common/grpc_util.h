/* gRPC C-core helpers both binaries need: the name of every status code (for log lines and
 * error messages), integer channel arguments, and the shutdown of a completion queue, which
 * must be drained before it can be destroyed. */
#ifndef TV_COMMON_GRPC_UTIL_H
#define TV_COMMON_GRPC_UTIL_H

#include <grpc/grpc.h>

/* "OK", "CANCELLED", ... "UNAUTHENTICATED" for the 17 codes of grpc/status.h, or
 * "UNKNOWN_STATUS" for any other value. A static string: never freed, never NULL. */
const char *tv_grpc_status_name(grpc_status_code code);

/* One integer channel argument (GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH ...). key must outlive
 * the argument: grpc's GRPC_ARG_* names are static strings. */
grpc_arg tv_grpc_int_arg(const char *key, int value);

/* Shut down cq, drain it until GRPC_QUEUE_SHUTDOWN and destroy it. The caller must have no
 * call, alarm or watch outstanding on it (a server must have been destroyed): the drain then
 * returns at once; otherwise it waits for those tags, which are discarded. Safe on NULL. */
void tv_grpc_cq_destroy(grpc_completion_queue *cq);

#endif

/* errno -> gRPC status for the server's rpcs (see status.h and PROTOCOL.md's status table). */
#include "server/status.h"

#include <errno.h>

grpc_status_code tv_status_from_errno(int err)
{
	switch (err) {
	case 0:
		return GRPC_STATUS_OK;
	case -ENOSPC:
	case -EDQUOT:
	case -EFBIG:
	case -ENOMEM:
	case -EMFILE:
	case -ENFILE:
	case -ENOBUFS:
	case -EMSGSIZE:
		return GRPC_STATUS_RESOURCE_EXHAUSTED;
	case -EEXIST:
		return GRPC_STATUS_ALREADY_EXISTS;
	case -EBUSY:
	/* the under-store (server/under/read.h): S3 unreachable, not answering, or a 5xx */
	case -ECONNREFUSED:
	case -ECONNRESET:
	case -ETIMEDOUT:
	case -EHOSTUNREACH:
	case -ENETUNREACH:
	case -EREMOTEIO:
		return GRPC_STATUS_UNAVAILABLE;
	case -EBADMSG:
		return GRPC_STATUS_DATA_LOSS;
	default:
		return GRPC_STATUS_INTERNAL;
	}
}

/* The gRPC status that tells a client truthfully why the server failed, from the negative errno
 * of the store or the catalog: one table for every rpc (Write, Query, Delete, Stats), the one
 * PROTOCOL.md's status table states. */
#ifndef TV_SERVER_STATUS_H
#define TV_SERVER_STATUS_H

#include <grpc/status.h>

/* err is a negative errno from a server module:
 *   -ENOSPC, -EDQUOT (a full disk or quota, also SQLite's "database or disk is full"), -EFBIG
 *   (a file-size limit), -ENOMEM, -EMFILE, -ENFILE (no descriptor free: the store's budget,
 *   server/fd_plan.h, or the process's or system's limit), -ENOBUFS (a query's memory limit,
 *   server/query.h), -EMSGSIZE (a block above the block limit)        RESOURCE_EXHAUSTED
 *   -EEXIST (a block id already committed)                           ALREADY_EXISTS
 *   -EBUSY (catalog.db held by another process past the busy wait),
 *   -ECONNREFUSED, -ECONNRESET, -ETIMEDOUT, -EHOSTUNREACH, -ENETUNREACH, -EREMOTEIO (the
 *   under-store's S3 cannot be reached or answers 5xx: server/under/read.h)  UNAVAILABLE
 *   -EBADMSG (a stored block that fails its checks)                  DATA_LOSS
 *   anything else (-EIO, -EROFS, -EUCLEAN for a damaged catalog...)  INTERNAL
 * 0 gives OK. */
grpc_status_code tv_status_from_errno(int err);

#endif

/* `tracevaultd --rebuild-catalog --under s3://BUCKET/PREFIX`: the bucket's side of rebuilding a
 * catalog from the under-store (server/under/UNDERSTORE.md "Rebuild from the bucket"). Lists
 * PREFIX/v1/ once (every page), reads each segment directory's manifest.json, checks that
 * every object it lists is in the listing with its size, range-GETs each block's header, and
 * hands each complete segment to the caller (server/bucket_rebuild.c), which checks the
 * headers against the manifest and inserts the catalog rows. This room knows neither blocks
 * nor the catalog (the arrows: server -> server/under -> common), so a header is raw bytes
 * here.
 *
 * A segment directory is complete iff its manifest is of a known format and version, agrees
 * with its directory (segment id, the hour of oldest_ts_ns) and with itself (sizes, times),
 * and every block object it lists exists with the listed size (UNDERSTORE.md "Manifest").
 * Anything else is skipped, counted by kind (enum tv_rebuild_skip), logged on stderr with
 * the reason, and listed in the summary (tv_rebuild_report_print).
 *
 * Two copies of one id never both get in: a segment id in two directories (two servers, or
 * two clients, chose the same id in different hours), or a block id in two segments, skips
 * every copy (TV_REBUILD_DUPLICATE_ID), so that the catalog never holds half of a collision.
 *
 * Memory: the complete segments are held until the listing ends (the duplicate check needs
 * them all): about 200 bytes per block plus its header (64 to 128 bytes). */
#ifndef TV_UNDER_REBUILD_H
#define TV_UNDER_REBUILD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "under/persist.h"

/* A manifest larger than this is skipped as bad (TV_REBUILD_BAD_MANIFEST) without being read:
 * a segment of the server's most blocks (65,536) has a manifest of about 17 MB */
#define TV_REBUILD_MANIFEST_MAX_BYTES (64u << 20)
/* The largest header_bytes a manifest may name (block headers are 64 to 128 bytes today,
 * proto/BLOCK.md; room for later versions); more is a bad manifest */
#define TV_REBUILD_HEADER_MAX_BYTES 4096u
/* How many directories (or keys) the summary names per kind; the rest are counted */
#define TV_REBUILD_LIST_MAX 8

/* Why a segment directory was not rebuilt. Kinds up to TV_REBUILD_LOSS_KINDS are a segment
 * with a manifest that the catalog does not get (a possible loss: the run exits 1); the
 * others are not. */
enum tv_rebuild_skip {
	TV_REBUILD_BAD_MANIFEST,   /* unreadable, not JSON, a field missing or contradicting */
	TV_REBUILD_UNKNOWN_VERSION, /* another format, or a version this server does not read */
	TV_REBUILD_MISSING_OBJECT, /* a listed block object missing or of another size */
	TV_REBUILD_BAD_HEADER,     /* a block's header does not parse or disagrees */
	TV_REBUILD_DUPLICATE_ID,   /* its segment id or a block id is in another directory too */
	TV_REBUILD_LOCAL_CONFLICT, /* the local catalog has the id with other blocks */
	TV_REBUILD_LOSS_KINDS,
	TV_REBUILD_NO_MANIFEST = TV_REBUILD_LOSS_KINDS, /* objects, no manifest: never acked */
	TV_REBUILD_DELETED_LOCALLY, /* the local catalog deleted this segment id: not revived */
	TV_REBUILD_SKIP_KINDS,
};

/* What a rebuild did, for the summary and the exit code. */
struct tv_rebuild_report {
	uint64_t objects;          /* objects listed under PREFIX/v1/ */
	uint64_t manifests;        /* manifests read */
	uint64_t segments_added, blocks_added, bytes_added; /* new rows, evicted */
	uint64_t segments_present; /* already in the local catalog with the same blocks */
	uint64_t unlisted_objects; /* objects in a segment's directory its manifest omits */
	uint64_t stray_objects;    /* keys under PREFIX/v1/ outside the layout */
	uint64_t skipped[TV_REBUILD_SKIP_KINDS];
	char *listed[TV_REBUILD_SKIP_KINDS]; /* malloc'd "dir dir ..." (TV_REBUILD_LIST_MAX) */
	char *stray_listed;                   /* the same for stray keys */
	char where[TV_PERSIST_PREFIX_MAX + 80]; /* "s3://BUCKET/PREFIX/v1/" */
	char bucket[64];
};

/* One block of a complete segment: the manifest's fields and HEADER_BYTES bytes of its
 * header as the bucket holds them (range GET). */
struct tv_rebuild_block {
	uint64_t block_id, bytes, min_ts_ns, max_ts_ns, record_count;
	uint32_t header_bytes, payload_crc32c;
	uint8_t *header; /* header_bytes bytes, owned by the segment */
};

/* A complete segment (every check above passed). dir is its key prefix, with the '/'. */
struct tv_rebuild_segment {
	uint64_t segment_id, oldest_ts_ns, newest_ts_ns, bytes;
	size_t n;
	struct tv_rebuild_block *blocks;
	char dir[TV_PERSIST_KEY_LEN];
};

struct tv_rebuild_opts {
	const char *endpoint, *region, *bucket, *prefix;
	const char *access_key, *secret_key; /* copied into the client */
};

struct tv_rebuild;

/* Opens an S3 client for the bucket and lists it once (tv_s3_head_bucket), so that bad
 * credentials, a missing bucket or an unreachable endpoint fail before the data dir is
 * touched. 0 and *out (tv_rebuild_close frees it), or a negative errno and err (one line,
 * never the secret). */
int tv_rebuild_open(struct tv_rebuild **out, const struct tv_rebuild_opts *o, char *err,
		    size_t errlen);
void tv_rebuild_close(struct tv_rebuild *rb);

/* What the caller answers for each complete segment: added (its rows are in the catalog),
 * present (the catalog had it already), skipped (the caller called tv_rebuild_report_skip),
 * or a negative errno, which stops the scan and is returned (err as the caller wrote it). */
enum tv_rebuild_outcome { TV_REBUILD_ADDED, TV_REBUILD_PRESENT, TV_REBUILD_SKIPPED };
typedef int (*tv_rebuild_segment_fn)(void *arg, const struct tv_rebuild_segment *seg,
				     struct tv_rebuild_report *rep, char *err, size_t errlen);

/* The scan (see the top of this file): FN is called once for each complete segment whose ids
 * no other directory has, in the listing's order (by hour, then segment id), after the whole
 * listing is read. REP is zeroed first and filled in; free it with tv_rebuild_report_free.
 * 0, or a negative errno and err: an S3 call failed (listing, a manifest's or a header's GET
 * other than a missing object: the bucket answered nothing certain, so nothing was handed to
 * FN), -ENOMEM, or FN's error. Makes no retry (reads could, s3.h; a failed rebuild is run
 * again: it only adds what is missing). */
int tv_rebuild_scan(struct tv_rebuild *rb, tv_rebuild_segment_fn fn, void *arg,
		    struct tv_rebuild_report *rep, char *err, size_t errlen);

/* Count DIR (a segment directory's key prefix, or a key) as skipped for KIND, log "rebuild:
 * skipped s3://BUCKET/DIR: WHY" on stderr, and name it in the summary (the first
 * TV_REBUILD_LIST_MAX of a kind). */
void tv_rebuild_report_skip(struct tv_rebuild_report *rep, enum tv_rebuild_skip kind,
			    const char *dir, const char *why);
/* 1 when no segment with a manifest was skipped (every kind below TV_REBUILD_LOSS_KINDS is
 * 0): the catalog holds every segment the bucket says it has. */
int tv_rebuild_report_complete(const struct tv_rebuild_report *rep);
/* The summary on F: one line of totals, then one line per kind that skipped anything
 * ("skipped, KIND: N: dir dir ... and M more"). */
void tv_rebuild_report_print(const struct tv_rebuild_report *rep, FILE *f);
void tv_rebuild_report_free(struct tv_rebuild_report *rep);

#endif

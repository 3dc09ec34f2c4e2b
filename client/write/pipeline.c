/* The capture write path behind tv_pipeline_add: records are packed into a block under a mutex,
 * sealed by size into the bounded block cache (back-pressure, then drop and count), and a writer
 * thread ends a segment every block_age_ms or on flush and streams it with the no-retry rule. */
#define _GNU_SOURCE /* pipe2 */
#include "write/pipeline.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/wait.h>

#include "common/clock.h"
#include "proto/block.h"
#include "write/block_cache.h"
#include "write/chunker.h"
#include "write/grpc_writer.h"
#include "proto/wire.h"

#define PROBE_TIMEOUT_MS 5000
#define ERR_BYTES 2048
/* Bounds of the options (pipeline.h says why each): beyond these a value is a typo. */
#define MIN_BLOCK_BYTES (1u << 10)
const struct tv_limit tv_pipeline_block_bytes_limit = {
	.min = MIN_BLOCK_BYTES,
	.max = TV_WIRE_MAX_BLOCK_BYTES / 2,
};
const struct tv_limit tv_pipeline_cache_bytes_limit = {
	.min = 2 * MIN_BLOCK_BYTES,
	.max = 1ull << 40,
};
const struct tv_limit tv_pipeline_time_ms_limit = {.min = 1, .max = 24ull * 3600 * 1000};

size_t tv_pipeline_min_cache_bytes(size_t block_bytes)
{
	/* saturated, so an unchecked block size cannot wrap into a small minimum */
	return block_bytes > SIZE_MAX / 2 ? SIZE_MAX : 2 * block_bytes;
}

int tv_pipeline_check_cache(size_t cache_bytes, size_t block_bytes)
{
	return cache_bytes >= tv_pipeline_min_cache_bytes(block_bytes) ? 0 : -EINVAL;
}

/* One sealed block in the cache, waiting for its segment. The pipeline owns one slice ref. */
struct sealed {
	uint64_t block_id;
	grpc_slice slice;
	uint32_t records;
	struct tv_block_loss loss; /* stamped in its header: owed again if the block is lost */
};

/*
 * Locking: mu guards the builder, the queue of sealed blocks, the flush counters and the stats.
 * Nobody waits for cache room or the network while holding it: add seals under mu, then
 * reserves without it; the writer thread takes the queue under mu and writes without it.
 */
struct tv_pipeline {
	struct tv_pipeline_opts o; /* defaults filled in; servers points into servers_copy */
	char *servers_copy;
	struct tv_block_cache *cache;
	struct tv_writer *w;
	struct tv_block_builder *bb;

	pthread_mutex_t mu;
	pthread_cond_t wake; /* to the writer thread: age, flush, stop, queue full enough */
	pthread_cond_t done; /* from the writer thread: a flush request was served */
	uint64_t oldest_ms;  /* monotonic ms of the oldest record not yet in a segment; 0: none */
	struct sealed *q;
	size_t qn, qcap, q_bytes;
	uint64_t flush_req, flush_done;
	bool stop;
	pthread_t thr;
	bool thr_started;
	struct tv_pipeline_stats st;
	/* segments that never reached the writer (out of memory), added to its counts */
	uint64_t lost_records, lost_blocks, lost_segments;
	struct tv_block_loss pending;  /* loss not yet stamped in a sealed block */
	struct tv_block_loss ext_seen; /* caller's totals at its last tv_pipeline_note_loss */
};

/* n records dropped before reaching a block; the caller holds mu */
static void drop_cache_locked(struct tv_pipeline *p, uint64_t n)
{
	p->st.records_dropped_cache += n;
	p->pending.cache += n;
}

static uint64_t now_ms(void)
{
	return tv_monotonic_ns() / TV_NS_PER_MS;
}

/* A sealed block that is not (yet) in the cache. */
struct raw_block {
	uint64_t block_id;
	void *data;
	size_t len;
	uint32_t records;
	struct tv_block_loss loss;
};

/* Seal the builder into rb; the caller holds mu. rb->data NULL when the builder was empty or
 * sealing failed (then the records are counted as dropped: they can never be sent). */
static void seal_locked(struct tv_pipeline *p, struct raw_block *rb)
{
	uint32_t n = tv_block_builder_count(p->bb);
	int ret;

	memset(rb, 0, sizeof(*rb));
	if (n == 0 && !tv_block_loss_any(&p->pending))
		return;
	rb->block_id = tv_random_id();
	tv_block_builder_set_loss(p->bb, &p->pending, tv_realtime_ns());
	ret = tv_block_builder_seal(p->bb, rb->block_id, TV_CODEC_ZSTD, TV_BLOCK_DEFAULT_ZSTD_LEVEL,
				    &rb->data, &rb->len);
	if (ret) {
		fprintf(stderr, "tracevault: sealing a block of %u records failed: %s; dropped\n",
			n, strerror(-ret));
		drop_cache_locked(p, n);
		/* counted as dropped, so they must leave the builder: a failed seal keeps them */
		tv_block_builder_reset(p->bb);
		rb->data = NULL;
		return;
	}
	rb->records = n;
	rb->loss = p->pending; /* now in rb's header */
	memset(&p->pending, 0, sizeof(p->pending));
}

/* Put rb into the cache within timeout_ms and queue it, or drop it and log one line.
 * Called without mu. Returns 0 or -ENOBUFS. */
static int cache_block(struct tv_pipeline *p, struct raw_block *rb, int timeout_ms)
{
	struct sealed s = {.block_id = rb->block_id, .records = rb->records, .loss = rb->loss};
	int ret = tv_block_cache_reserve(p->cache, rb->len, timeout_ms);

	if (ret == 0)
		ret = tv_block_cache_adopt(p->cache, rb->data, rb->len, &s.slice);
	else
		free(rb->data);
	rb->data = NULL;
	pthread_mutex_lock(&p->mu);
	if (ret == 0 && p->qn == p->qcap) {
		size_t cap = p->qcap ? p->qcap * 2 : 64;
		struct sealed *q = realloc(p->q, cap * sizeof(*q));

		if (!q) {
			grpc_slice_unref(s.slice); /* frees the block, returns its bytes */
			ret = -ENOMEM;
		} else {
			p->q = q;
			p->qcap = cap;
		}
	}
	if (ret) {
		drop_cache_locked(p, rb->records);
		tv_block_loss_add(&p->pending, &rb->loss);
		pthread_mutex_unlock(&p->mu);
		fprintf(stderr, "tracevault: block cache %s: dropped 1 block, %u records\n",
			ret == -ENOMEM ? "out of memory"
				       : ret == -E2BIG ? "smaller than one block"
						       : "full past the back-pressure time",
			rb->records);
		return -ENOBUFS;
	}
	p->q[p->qn++] = s;
	p->q_bytes += rb->len;
	/* a large backlog should not wait for the age tick: it holds cache room */
	if (p->q_bytes >= p->o.cache_bytes / 2)
		pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

int tv_pipeline_add(struct tv_pipeline *p, const Tracevault__V1__TraceRecord *r)
{
	struct raw_block rb = {0};
	int ret;

	pthread_mutex_lock(&p->mu);
	p->st.records_in++;
	ret = tv_block_builder_add(p->bb, r);
	if (ret) {
		drop_cache_locked(p, 1); /* never sealed: too big or ENOMEM */
		pthread_mutex_unlock(&p->mu);
		return ret;
	}
	if (p->oldest_ms == 0) {
		p->oldest_ms = now_ms();
		pthread_cond_signal(&p->wake); /* the writer thread sleeps until a record exists */
	}
	if (tv_block_builder_raw_bytes(p->bb) >= p->o.block_bytes)
		seal_locked(p, &rb);
	pthread_mutex_unlock(&p->mu);
	if (!rb.data)
		return 0;
	return cache_block(p, &rb, p->o.backpressure_ms);
}

/* Write the given cached blocks as one segment and drop the pipeline's refs on them. */
static void write_segment(struct tv_pipeline *p, struct sealed *v, size_t n)
{
	struct tv_block_buf *bufs;
	char err[ERR_BYTES];
	const struct tv_writer_stats *ws;
	int ret = -ENOMEM;

	if (n == 0)
		return;
	bufs = calloc(n, sizeof(*bufs));
	if (bufs) {
		for (size_t i = 0; i < n; i++) {
			bufs[i].block_id = v[i].block_id;
			bufs[i].data = GRPC_SLICE_START_PTR(v[i].slice);
			bufs[i].len = GRPC_SLICE_LENGTH(v[i].slice);
			bufs[i].record_count = v[i].records;
			bufs[i].slice = &v[i].slice;
		}
		ret = tv_writer_write_segment(p->w, tv_random_id(), bufs, n, err, sizeof(err));
		if (ret)
			fprintf(stderr, "tracevault: %s\n", err);
	}
	pthread_mutex_lock(&p->mu);
	if (ret) {
		/* The whole segment is gone (the no-retry rule deletes every part of it): its
		 * records and the loss its headers carried are owed to the next block. */
		for (size_t i = 0; i < n; i++) {
			p->pending.failed += v[i].records;
			tv_block_loss_add(&p->pending, &v[i].loss);
		}
	}
	if (!bufs) {
		/* counted like a failed segment: these records are gone */
		for (size_t i = 0; i < n; i++)
			p->lost_records += v[i].records;
		p->lost_blocks += n;
		p->lost_segments++;
		fprintf(stderr, "tracevault: out of memory writing a segment: dropped %zu blocks\n",
			n);
	}
	ws = tv_writer_stats(p->w);
	p->st.records_committed = ws->records_committed;
	p->st.blocks_committed = ws->blocks_committed;
	p->st.segments_committed = ws->segments_committed;
	p->st.bytes_committed = ws->bytes_committed;
	p->st.cleanup_errors = ws->cleanup_errors;
	p->st.payload_bytes_copied = ws->payload_bytes_copied;
	p->st.records_dropped_failed = ws->records_dropped + p->lost_records;
	p->st.blocks_dropped = ws->blocks_dropped + p->lost_blocks;
	p->st.segments_failed = ws->segments_failed + p->lost_segments;
	pthread_mutex_unlock(&p->mu);
	/* the cache keeps a block until its segment is committed or failed, no longer */
	for (size_t i = 0; i < n; i++)
		grpc_slice_unref(v[i].slice);
	free(bufs);
}

/* The blocks of one flush form one segment, unless they are more than a server takes in one
 * segment (tiny blocks, a big cache): then consecutive runs of at most that many. */
static void write_segments(struct tv_pipeline *p, struct sealed *v, size_t n)
{
	for (size_t off = 0; off < n; off += TV_WIRE_MAX_SEGMENT_BLOCKS)
		write_segment(p, v + off,
			      n - off < TV_WIRE_MAX_SEGMENT_BLOCKS ? n - off
								  : TV_WIRE_MAX_SEGMENT_BLOCKS);
}

/* One segment: seal the open block, take every queued block, write them together. */
static void writer_cycle(struct tv_pipeline *p)
{
	struct raw_block rb;
	struct sealed *v;
	size_t n;

	pthread_mutex_lock(&p->mu);
	seal_locked(p, &rb);
	v = p->q;
	n = p->qn;
	p->q = NULL;
	p->qn = p->qcap = p->q_bytes = 0;
	p->oldest_ms = 0;
	pthread_mutex_unlock(&p->mu);

	/* The open block joins the segment if the cache has room now. If not, the cache is full
	 * of the queued blocks only this thread can release: write those first, then wait. */
	if (rb.data && tv_block_cache_reserve(p->cache, rb.len, 0) == 0) {
		struct sealed s = {.block_id = rb.block_id, .records = rb.records,
				   .loss = rb.loss};
		struct sealed *nv = realloc(v, (n + 1) * sizeof(*nv));

		if (nv) /* realloc may have moved v even if adopt fails below */
			v = nv;
		if (tv_block_cache_adopt(p->cache, rb.data, rb.len, &s.slice) == 0) {
			if (nv) {
				v[n++] = s;
			} else {
				pthread_mutex_lock(&p->mu);
				drop_cache_locked(p, rb.records);
				tv_block_loss_add(&p->pending, &rb.loss);
				pthread_mutex_unlock(&p->mu);
				grpc_slice_unref(s.slice);
			}
		} else {
			pthread_mutex_lock(&p->mu);
			drop_cache_locked(p, rb.records);
			tv_block_loss_add(&p->pending, &rb.loss);
			pthread_mutex_unlock(&p->mu);
		}
		rb.data = NULL;
	}
	write_segments(p, v, n);
	free(v);
	if (rb.data && cache_block(p, &rb, p->o.backpressure_ms) == 0) {
		pthread_mutex_lock(&p->mu);
		v = p->q;
		n = p->qn;
		p->q = NULL;
		p->qn = p->qcap = p->q_bytes = 0;
		pthread_mutex_unlock(&p->mu);
		write_segments(p, v, n);
		free(v);
	}
}

static void *writer_main(void *arg)
{
	struct tv_pipeline *p = arg;

	pthread_mutex_lock(&p->mu);
	for (;;) {
		uint64_t served = p->flush_req;
		bool due = p->stop || p->flush_req > p->flush_done ||
			   p->q_bytes >= p->o.cache_bytes / 2 ||
			   (p->oldest_ms && now_ms() >= p->oldest_ms + (uint64_t)p->o.block_age_ms);

		if (!due) {
			/* sleep until the oldest record is block_age_ms old, or a signal */
			uint64_t until_ms = p->oldest_ms ? p->oldest_ms + (uint64_t)p->o.block_age_ms
							 : now_ms() + (uint64_t)p->o.block_age_ms;
			struct timespec ts = tv_timespec_from_ns(until_ms * TV_NS_PER_MS);

			pthread_cond_timedwait(&p->wake, &p->mu, &ts);
			continue;
		}
		pthread_mutex_unlock(&p->mu);
		writer_cycle(p);
		pthread_mutex_lock(&p->mu);
		if (served > p->flush_done) {
			p->flush_done = served;
			pthread_cond_broadcast(&p->done);
		}
		if (p->stop && p->qn == 0 && tv_block_builder_count(p->bb) == 0)
			break;
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

int tv_pipeline_flush(struct tv_pipeline *p)
{
	uint64_t req;
	int ret;

	pthread_mutex_lock(&p->mu);
	req = ++p->flush_req;
	pthread_cond_signal(&p->wake);
	/* bounded: the writer thread serves each request after at most one segment write, each
	 * bounded by write_timeout_ms + the Delete deadlines */
	while (p->flush_done < req)
		pthread_cond_wait(&p->done, &p->mu);
	ret = p->st.segments_failed ? -EIO : 0;
	pthread_mutex_unlock(&p->mu);
	return ret;
}

void tv_pipeline_stats(struct tv_pipeline *p, struct tv_pipeline_stats *st)
{
	struct tv_block_cache_stats cs;

	tv_block_cache_stats(p->cache, &cs);
	pthread_mutex_lock(&p->mu);
	*st = p->st;
	pthread_mutex_unlock(&p->mu);
	st->cache_bytes_used = cs.used_bytes;
	st->cache_bytes_peak = cs.peak_bytes;
}

void tv_pipeline_note_loss(struct tv_pipeline *p, const struct tv_block_loss *total)
{
	struct tv_block_loss ext = *total;

	/* the pipeline counts its own cache and failed drops: the caller's are ignored */
	ext.cache = ext.failed = 0;
	pthread_mutex_lock(&p->mu);
	tv_block_loss_add_since(&p->pending, &ext, &p->ext_seen);
	pthread_mutex_unlock(&p->mu);
}

static int validate(struct tv_pipeline_opts *o, char *err, size_t errlen)
{
	if (!o->servers || !*o->servers) {
		snprintf(err, errlen, "no server given");
		return -EINVAL;
	}
	if (!o->block_bytes)
		o->block_bytes = TV_DEFAULT_BLOCK_BYTES;
	if (!o->cache_bytes)
		o->cache_bytes = TV_DEFAULT_CACHE_BYTES;
	if (!o->block_age_ms)
		o->block_age_ms = TV_DEFAULT_BLOCK_AGE_MS;
	if (!o->backpressure_ms)
		o->backpressure_ms = TV_DEFAULT_BACKPRESSURE_MS;
	if (!o->max_message_bytes)
		o->max_message_bytes = TV_DEFAULT_MAX_MESSAGE_BYTES;
	if (!o->chunk_bytes)
		o->chunk_bytes = tv_chunk_default_bytes(o->max_message_bytes);
	/* window and delete deadline: 0 goes to the writer, whose defaults they are */
	if (tv_limit_check(&tv_pipeline_block_bytes_limit, o->block_bytes) ||
	    tv_limit_check(&tv_pipeline_cache_bytes_limit, o->cache_bytes)) {
		snprintf(err, errlen, "invalid block or cache size (%zu, %zu bytes)", o->block_bytes,
			 o->cache_bytes);
		return -EINVAL;
	}
	if (tv_pipeline_check_cache(o->cache_bytes, o->block_bytes)) {
		snprintf(err, errlen, "cache of %zu bytes is smaller than two blocks of %zu bytes",
			 o->cache_bytes, o->block_bytes);
		return -EINVAL;
	}
	if (tv_limit_check(&tv_pipeline_time_ms_limit, (uint64_t)o->block_age_ms) ||
	    tv_limit_check(&tv_pipeline_time_ms_limit, (uint64_t)o->backpressure_ms) ||
	    o->write_timeout_ms < 0 || o->delete_timeout_ms < 0 ||
	    (uint64_t)o->write_timeout_ms > tv_pipeline_time_ms_limit.max ||
	    (uint64_t)o->delete_timeout_ms > tv_pipeline_time_ms_limit.max) {
		snprintf(err, errlen, "invalid time option (each must be 1 to %" PRIu64 " ms)",
			 tv_pipeline_time_ms_limit.max);
		return -EINVAL;
	}
	/* each its own reason: a bad message size is not the chunk's fault */
	if (tv_limit_check(&tv_wire_message_bytes_limit, o->max_message_bytes)) {
		snprintf(err, errlen, "invalid message size limit (%zu bytes, want %" PRIu64
			 " to %" PRIu64 ")", o->max_message_bytes, tv_wire_message_bytes_limit.min,
			 tv_wire_message_bytes_limit.max);
		return -EINVAL;
	}
	if (tv_limit_check(&tv_chunk_bytes_limit, o->chunk_bytes)) {
		snprintf(err, errlen, "invalid chunk size (%zu bytes, want %" PRIu64 " to %" PRIu64
			 ")", o->chunk_bytes, tv_chunk_bytes_limit.min, tv_chunk_bytes_limit.max);
		return -EINVAL;
	}
	if (tv_chunk_check_fits(o->chunk_bytes, o->max_message_bytes)) {
		snprintf(err, errlen, "chunk of %zu bytes does not fit a message of %zu bytes",
			 o->chunk_bytes, o->max_message_bytes);
		return -EINVAL;
	}
	if (o->window_bytes && tv_limit_check(&tv_writer_window_bytes_limit, o->window_bytes)) {
		snprintf(err, errlen, "invalid window of %zu bytes", o->window_bytes);
		return -EINVAL;
	}
	return 0;
}

/* The writer's options of validated pipeline options o, its server list servers. */
static void writer_opts(const struct tv_pipeline_opts *o, char *servers,
			struct tv_writer_opts *wo)
{
	memset(wo, 0, sizeof(*wo));
	wo->server = servers;
	wo->tls = o->tls;
	wo->max_message_bytes = o->max_message_bytes;
	wo->chunk_bytes = o->chunk_bytes;
	wo->timeout_ms = o->write_timeout_ms;
	wo->window_bytes = o->window_bytes;
	wo->no_zerocopy = o->no_zerocopy;
	wo->delete_timeout_ms = o->delete_timeout_ms;
	wo->test_corrupt_chunk = o->test_corrupt_chunk;
}

/* The child of tv_pipeline_probe_servers: probes as tv_pipeline_new does and sends the result
 * (an int, then the reason's bytes) up fd. Never returns. */
static void probe_child(const struct tv_pipeline_opts *o, int fd)
{
	struct tv_pipeline_opts v = *o;
	struct tv_writer_opts wo;
	struct tv_writer *w = NULL;
	char err[ERR_BYTES] = "", *servers = NULL, msg[sizeof(int) + ERR_BYTES];
	size_t len;
	int ret;

	/* Ctrl-C reaches the whole process group: the probe ends at once instead of running
	 * to its timeout under the parent's flag-setting handler */
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	ret = validate(&v, err, sizeof(err));
	if (!ret) {
		servers = v.servers ? strdup(v.servers) : NULL;
		writer_opts(&v, servers, &wo);
		w = servers ? tv_writer_new(&wo) : NULL;
		if (!w) {
			snprintf(err, sizeof(err), "invalid server list '%s'", o->servers);
			ret = -EINVAL;
		}
	}
	if (!ret)
		ret = tv_writer_probe(w, PROBE_TIMEOUT_MS, err, sizeof(err));
	/* one write of at most ERR_BYTES + 4 bytes; the parent reads to EOF */
	len = strnlen(err, sizeof(err) - 1);
	memcpy(msg, &ret, sizeof(ret));
	memcpy(msg + sizeof(ret), err, len);
	if (write(fd, msg, sizeof(ret) + len) < 0)
		_exit(2);
	/* no teardown: gRPC's threads end with the process; _exit skips atexit handlers (and
	 * a sanitizer's leak check of what the exit leaves allocated) */
	_exit(0);
}

int tv_pipeline_probe_servers(const struct tv_pipeline_opts *o, char *err, size_t errlen)
{
	char buf[sizeof(int) + ERR_BYTES];
	size_t got = 0;
	int fds[2], status = 0, ret;
	ssize_t n;
	pid_t pid;

	if (pipe2(fds, O_CLOEXEC)) {
		ret = -errno;
		snprintf(err, errlen, "probing the servers: pipe: %s", strerror(-ret));
		return ret;
	}
	fflush(NULL); /* the child must not write the parent's buffered output again */
	pid = fork();
	if (pid < 0) {
		ret = -errno;
		close(fds[0]);
		close(fds[1]);
		snprintf(err, errlen, "probing the servers: fork: %s", strerror(-ret));
		return ret;
	}
	if (pid == 0) {
		close(fds[0]);
		probe_child(o, fds[1]);
	}
	close(fds[1]);
	do {
		n = read(fds[0], buf + got, sizeof(buf) - got);
		if (n > 0)
			got += (size_t)n;
	} while ((n > 0 && got < sizeof(buf)) || (n < 0 && errno == EINTR));
	close(fds[0]);
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (got < sizeof(int)) {
		if (WIFSIGNALED(status))
			snprintf(err, errlen, "probing the servers: the probe process was killed by "
				 "signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
		else
			snprintf(err, errlen, "probing the servers: the probe process ended without "
				 "an answer (exit status %d)", WEXITSTATUS(status));
		return -EIO;
	}
	memcpy(&ret, buf, sizeof(ret));
	if (ret)
		snprintf(err, errlen, "%.*s", (int)(got - sizeof(int)), buf + sizeof(int));
	return ret;
}

int tv_pipeline_new(struct tv_pipeline **out, const struct tv_pipeline_opts *o, char *err,
		    size_t errlen)
{
	struct tv_writer_opts wo = {0};
	struct tv_pipeline *p;
	pthread_condattr_t ca;
	int ret;

	*out = NULL;
	p = calloc(1, sizeof(*p));
	if (!p) {
		snprintf(err, errlen, "out of memory");
		return -ENOMEM;
	}
	p->o = *o;
	ret = validate(&p->o, err, errlen);
	if (ret) {
		free(p);
		return ret;
	}
	pthread_mutex_init(&p->mu, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&p->wake, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&p->done, NULL);
	p->servers_copy = strdup(o->servers);
	p->o.servers = p->servers_copy;
	writer_opts(&p->o, p->servers_copy, &wo);
	p->cache = tv_block_cache_new(p->o.cache_bytes);
	p->bb = tv_block_builder_new();
	p->w = p->servers_copy ? tv_writer_new(&wo) : NULL;
	if (!p->cache || !p->bb || !p->w) {
		snprintf(err, errlen, !p->w && p->cache && p->bb
				      ? "invalid server list '%s'" : "out of memory%s",
			 !p->w && p->cache && p->bb ? o->servers : "");
		ret = !p->w && p->cache && p->bb ? -EINVAL : -ENOMEM;
		goto fail;
	}
	ret = tv_writer_probe(p->w, PROBE_TIMEOUT_MS, err, errlen);
	if (ret)
		goto fail;
	ret = -pthread_create(&p->thr, NULL, writer_main, p);
	if (ret) {
		snprintf(err, errlen, "starting the writer thread: %s", strerror(-ret));
		goto fail;
	}
	p->thr_started = true;
	*out = p;
	return 0;
fail:
	tv_pipeline_free(p);
	return ret;
}

void tv_pipeline_free(struct tv_pipeline *p)
{
	if (!p)
		return;
	if (p->thr_started) {
		pthread_mutex_lock(&p->mu);
		p->stop = true; /* the thread writes what is left, then exits */
		pthread_cond_signal(&p->wake);
		pthread_mutex_unlock(&p->mu);
		pthread_join(p->thr, NULL);
	}
	for (size_t i = 0; i < p->qn; i++)
		grpc_slice_unref(p->q[i].slice);
	free(p->q);
	tv_writer_free(p->w);
	tv_block_builder_free(p->bb);
	tv_block_cache_free(p->cache);
	pthread_cond_destroy(&p->done);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->mu);
	free(p->servers_copy);
	free(p);
}

/* ---- the struct tv_record_sink view (write/sink.h) ---- */

static int sink_add(void *ctx, const Tracevault__V1__TraceRecord *r)
{
	return tv_pipeline_add(ctx, r);
}

static void sink_note_loss(void *ctx, const struct tv_block_loss *total)
{
	tv_pipeline_note_loss(ctx, total);
}

static int sink_flush(void *ctx)
{
	return tv_pipeline_flush(ctx);
}

void tv_pipeline_sink(struct tv_pipeline *p, struct tv_record_sink *sink)
{
	*sink = (struct tv_record_sink){
		.ctx = p, .add = sink_add, .note_loss = sink_note_loss, .flush = sink_flush,
	};
}

/* The Linux capabilities `tracevault capture` needs (one table per --mode, the one source the
 * CLI's check, --print-capabilities, contrib/tracevault-capture.service and its test read),
 * checked before anything is loaded, and dropped once the event source is open and before any
 * thread starts: the running loop keeps only what a probe of its own calls shows it still
 * needs, and every thread started later inherits the dropped sets. */
#ifndef TV_CAPTURE_PRIVS_H
#define TV_CAPTURE_PRIVS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "capture/source.h"

/* Names of the capabilities --mode (enum tv_capture_mode) needs in the effective set, as
 * systemd writes them, space-separated ("CAP_BPF CAP_PERFMON ..."), into buf (bufsize bytes;
 * 128 is enough). Returns 0, or -EINVAL for an unknown mode. */
int tv_capture_caps_names(int mode, char *buf, size_t bufsize);

/* Checks that every capability --mode needs is in this process's effective set. Returns 0, or
 * -EPERM with one line in err naming the needed and the missing ones (err is
 * TV_CLI_ERR_LEN-sized or larger: 256 bytes is enough); another negative errno when the set
 * cannot be read. Loads nothing. */
int tv_capture_check_caps(int mode, char *err, size_t errlen);

/* What tv_capture_drop_caps left: the capabilities the loop keeps (bit N = capability N; 0
 * for none) and whether the bounding set was emptied too (it needs CAP_SETPCAP). */
struct tv_caps_dropped {
	uint64_t kept_mask;
	bool bounding_cleared;
};

/* Once src is open (loaded, attached, seeded, packet socket bound) and while the calling
 * thread is the process's only one: capabilities, the bounding set, securebits and
 * no_new_privs belong to each thread, and a thread copies its creator's, so a drop made before
 * any other thread starts covers every thread the process will have. Clears every capability
 * from the effective, permitted, inheritable and ambient sets, and from the bounding set when
 * CAP_SETPCAP allows it (root), except those the running loop needs, found by running
 * src->probe without them; sets PR_SET_NO_NEW_PRIVS and, with CAP_SETPCAP, SECBIT_NOROOT
 * (locked), so no later execve can give them back (not even to uid 0); reads the result back
 * from /proc (tv_capture_check_threads). Fills *out and writes one line to stderr saying what
 * was dropped and what is kept and why. Returns 0, or a negative errno with one line in err
 * (the run must not go on holding what it meant to drop): -EBUSY when another thread exists. */
int tv_capture_drop_caps(int mode, const struct tv_capture_source *src,
			 struct tv_caps_dropped *out, char *err, size_t errlen);

/* Checks every thread of this process (/proc/self/task/TID/status, as the kernel holds them):
 * none may hold a capability outside d->kept_mask in its permitted, effective, inheritable or
 * ambient set, nor in its bounding set when d->bounding_cleared, and each must have
 * no_new_privs. For the caller to run after it started its threads (gRPC's, the pipeline's,
 * the metrics endpoint's). Returns 0 and the threads read in *nthreads (when not NULL), or
 * -EPERM with one line in err naming the thread (id and name) and its sets; another negative
 * errno when /proc cannot be read. */
int tv_capture_check_threads(const struct tv_caps_dropped *d, unsigned *nthreads, char *err,
			     size_t errlen);

#endif

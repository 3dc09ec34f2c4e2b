/* The Linux capabilities `tracevault capture` needs (one table per --mode, the one source the
 * CLI's check, --print-capabilities, contrib/tracevault-capture.service and its test read),
 * checked before anything is loaded, and dropped once the event source is open: the running
 * loop keeps only what a probe of its own calls shows it still needs. */
#ifndef TV_CAPTURE_PRIVS_H
#define TV_CAPTURE_PRIVS_H

#include <stddef.h>

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

/* Once src is open (loaded, attached, seeded, packet socket bound): clears every capability
 * from the effective, permitted, inheritable and ambient sets, and from the bounding set when
 * CAP_SETPCAP allows it (root), except those the running loop needs, found by running
 * src->probe without them; sets PR_SET_NO_NEW_PRIVS and, with CAP_SETPCAP, SECBIT_NOROOT
 * (locked), so no later execve can give them back (not even to uid 0). Writes one line to
 * stderr saying what was dropped and what is kept and why. Returns 0, or a negative errno with
 * one line in err (the run must not go on holding what it meant to drop). */
int tv_capture_drop_caps(int mode, const struct tv_capture_source *src, char *err,
			 size_t errlen);

#endif

/* `tracevault capture`'s capabilities (privs.h): which --mode needs, checked up front so a
 * missing one is one clear line and not a libbpf error half-way through the load; and their
 * drop once the source is open, so the long-running loop that parses untrusted traffic holds
 * nothing it could be tricked into using.
 *
 * Why each is needed, measured on kernel 6.18 (kernel.unprivileged_bpf_disabled=2,
 * kernel.perf_event_paranoid=2) by running capture as uid 65534 with exactly a given set
 * (setpriv --inh-caps/--ambient-caps/--bounding-set); CAP_SYS_ADMIN is needed for none:
 * - CAP_BPF: creating maps and loading programs (BPF_MAP_CREATE, BPF_PROG_LOAD).
 * - CAP_PERFMON: tracing programs and their tracepoint perf events (without it the load fails
 *   with EPERM).
 * - CAP_DAC_READ_SEARCH: tracefs is mode 0700 root, and libbpf reads the tracepoint ids
 *   there; other users' /proc/PID/fd directories are 0500 (seeding lists them).
 * - CAP_SYS_PTRACE: readlink of another user's /proc/PID/fd/N is a ptrace access check
 *   (PTRACE_MODE_READ_FSCREDS): without it connections open before the start are not found.
 * - sockfilter: CAP_BPF for its map and program (a socket filter needs no CAP_PERFMON) and
 *   CAP_NET_RAW for the AF_PACKET socket; it reads no /proc and no tracefs.
 * After the open the loop reads the ring (mmap'd memory, epoll), reads and deletes map
 * entries by fd and reads packet statistics: since 6.5 only BPF_PROG_LOAD and BPF_MAP_CREATE
 * check unprivileged_bpf_disabled, so on this kernel it needs nothing; an older kernel refuses
 * every bpf() without CAP_BPF, which the probe finds and CAP_BPF is kept. */
#include "capture/privs.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>

#include "capture/capture.h"

struct need {
	cap_value_t cap;
	const char *name;
};

static const struct need tracepoint_needs[] = {
	{CAP_BPF, "CAP_BPF"},
	{CAP_PERFMON, "CAP_PERFMON"},
	{CAP_DAC_READ_SEARCH, "CAP_DAC_READ_SEARCH"},
	{CAP_SYS_PTRACE, "CAP_SYS_PTRACE"},
};

static const struct need sockfilter_needs[] = {
	{CAP_BPF, "CAP_BPF"},
	{CAP_NET_RAW, "CAP_NET_RAW"},
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))

/* The table of mode, and its length (0: unknown mode). */
static size_t needs_of(int mode, const struct need **out)
{
	if (mode == TV_CAPTURE_MODE_TRACEPOINT) {
		*out = tracepoint_needs;
		return NELEMS(tracepoint_needs);
	}
	if (mode == TV_CAPTURE_MODE_SOCKFILTER) {
		*out = sockfilter_needs;
		return NELEMS(sockfilter_needs);
	}
	*out = NULL;
	return 0;
}

/* Appends name to buf (size bufsize, NUL-terminated) after sep when buf is not empty. */
static void append(char *buf, size_t bufsize, const char *sep, const char *name)
{
	size_t len = strlen(buf);

	snprintf(buf + len, bufsize - len, "%s%s", len ? sep : "", name);
}

int tv_capture_caps_names(int mode, char *buf, size_t bufsize)
{
	const struct need *n;
	size_t nn = needs_of(mode, &n);

	if (!nn || !bufsize)
		return -EINVAL;
	buf[0] = 0;
	for (size_t i = 0; i < nn; i++)
		append(buf, bufsize, " ", n[i].name);
	return 0;
}

static bool has(cap_t c, cap_value_t cap, cap_flag_t flag)
{
	cap_flag_value_t v = CAP_CLEAR;

	return cap_get_flag(c, cap, flag, &v) == 0 && v == CAP_SET;
}

int tv_capture_check_caps(int mode, char *err, size_t errlen)
{
	const struct need *n;
	size_t nn = needs_of(mode, &n);
	char all[128] = "", missing[128] = "";
	cap_t c;
	int rc;

	if (!nn) {
		snprintf(err, errlen, "unknown capture mode %d", mode);
		return -EINVAL;
	}
	c = cap_get_proc();
	if (!c) {
		rc = -errno;
		snprintf(err, errlen, "reading this process's capabilities: %s", strerror(-rc));
		return rc;
	}
	for (size_t i = 0; i < nn; i++) {
		cap_value_t cap = n[i].cap;
		const char *name = n[i].name;

		/* before 5.8 the kernel has no CAP_BPF/CAP_PERFMON: CAP_SYS_ADMIN stands for them
		 * (not exercised on this project's 6.18 machines) */
		if ((cap == CAP_BPF || cap == CAP_PERFMON) && !CAP_IS_SUPPORTED(cap)) {
			cap = CAP_SYS_ADMIN;
			name = "CAP_SYS_ADMIN";
			if (strstr(all, name))
				continue;
		}
		append(all, sizeof(all), ", ", name);
		if (!has(c, cap, CAP_EFFECTIVE))
			append(missing, sizeof(missing), ", ", name);
	}
	cap_free(c);
	if (!missing[0])
		return 0;
	snprintf(err, errlen, "capture --mode %s needs %s (effective): missing %s; run as root or "
		 "grant them (see contrib/tracevault-capture.service)",
		 mode == TV_CAPTURE_MODE_SOCKFILTER ? "sockfilter" : "tracepoint", all, missing);
	return -EPERM;
}

/* cap_set_proc with a one-line reason. */
static int set_proc(cap_t c, const char *what, char *err, size_t errlen)
{
	int rc;

	if (cap_set_proc(c) == 0)
		return 0;
	rc = -errno;
	snprintf(err, errlen, "dropping capabilities (%s): %s", what, strerror(-rc));
	return rc;
}

/* The names of the permitted capabilities of c but keep, comma-separated; *count of them. */
static void permitted_names(cap_t c, cap_value_t keep, char *buf, size_t bufsize, int *count)
{
	*count = 0;
	buf[0] = 0;
	for (cap_value_t v = 0; v < (cap_value_t)cap_max_bits(); v++) {
		char *name;

		if (v == keep || !has(c, v, CAP_PERMITTED))
			continue;
		(*count)++;
		name = cap_to_name(v); /* "cap_bpf": written as the check and systemd write it */
		for (char *p = name; p && *p; p++)
			*p = (char)toupper((unsigned char)*p);
		append(buf, bufsize, ", ", name ? name : "?");
		cap_free(name);
	}
}

/* One task's capability sets, from /proc/self/task/TID/status. */
struct task_caps {
	uint64_t inh, prm, eff, bnd, amb;
	int no_new_privs;
	char name[32];
};

/* Reads the status of task tid into *t. Returns 0, -ENOENT when the task ended meanwhile, or
 * -EIO when a field is missing. */
static int read_task_caps(const char *tid, struct task_caps *t)
{
	char path[300], line[128];
	unsigned seen = 0;
	FILE *f;

	memset(t, 0, sizeof(*t));
	snprintf(path, sizeof(path), "/proc/self/task/%s/status", tid);
	f = fopen(path, "re");
	if (!f)
		return -ENOENT;
	while (fgets(line, sizeof(line), f)) {
		static const char *const keys[] = {"CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
						   "CapAmb:"};
		uint64_t *fields[] = {&t->inh, &t->prm, &t->eff, &t->bnd, &t->amb};

		if (!strncmp(line, "Name:", 5)) {
			snprintf(t->name, sizeof(t->name), "%s", line + 5 + strspn(line + 5, "\t "));
			t->name[strcspn(t->name, "\n")] = 0;
		} else if (!strncmp(line, "NoNewPrivs:", 11)) {
			t->no_new_privs = atoi(line + 11);
			seen |= 1u << 5;
		}
		for (unsigned i = 0; i < 5; i++)
			if (!strncmp(line, keys[i], 7)) {
				*fields[i] = strtoull(line + 7, NULL, 16);
				seen |= 1u << i;
			}
	}
	fclose(f);
	return seen == 0x3f ? 0 : -EIO;
}

int tv_capture_check_threads(const struct tv_caps_dropped *d, unsigned *nthreads, char *err,
			     size_t errlen)
{
	struct dirent *e;
	unsigned n = 0;
	int rc = 0;
	DIR *dir = opendir("/proc/self/task");

	if (!dir) {
		rc = -errno;
		snprintf(err, errlen, "checking the capability drop: /proc/self/task: %s",
			 strerror(-rc));
		return rc;
	}
	while (!rc && (e = readdir(dir))) {
		struct task_caps t;
		const char *what = NULL;

		if (e->d_name[0] == '.')
			continue;
		rc = read_task_caps(e->d_name, &t);
		if (rc == -ENOENT) { /* a thread that ended: it holds nothing now */
			rc = 0;
			continue;
		}
		if (rc) {
			snprintf(err, errlen, "checking the capability drop: /proc/self/task/%s/"
				 "status lacks a capability line", e->d_name);
			break;
		}
		n++;
		if ((t.prm | t.eff | t.inh | t.amb) & ~d->kept_mask)
			what = "still holds capabilities";
		else if (d->bounding_cleared && (t.bnd & ~d->kept_mask))
			what = "still has a bounding set";
		else if (!t.no_new_privs)
			what = "lacks no_new_privs";
		if (what) {
			snprintf(err, errlen, "thread %s (%s) %s after the capability drop (CapPrm "
				 "%016" PRIx64 ", CapEff %016" PRIx64 ", CapBnd %016" PRIx64
				 ", NoNewPrivs %d): refusing to run", e->d_name, t.name, what, t.prm,
				 t.eff, t.bnd, t.no_new_privs);
			rc = -EPERM;
		}
	}
	closedir(dir);
	if (!rc && nthreads)
		*nthreads = n;
	return rc;
}

/* How many tasks this process has (its threads, the caller included), or a negative errno. */
static int count_threads(void)
{
	struct dirent *e;
	int n = 0;
	DIR *d = opendir("/proc/self/task");

	if (!d)
		return -errno;
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

int tv_capture_drop_caps(int mode, const struct tv_capture_source *src,
			 struct tv_caps_dropped *out, char *err, size_t errlen)
{
	cap_t held = NULL, work = NULL;
	cap_value_t keep = -1;
	char dropped[160];
	int rc, probe, ndropped, nthreads;
	bool setpcap;

	if (!needs_of(mode, &(const struct need *){NULL})) {
		snprintf(err, errlen, "unknown capture mode %d", mode);
		return -EINVAL;
	}
	/* capabilities, the bounding set, securebits and no_new_privs are per thread: a thread
	 * that exists now would keep them, one started later copies its creator's */
	nthreads = count_threads();
	if (nthreads != 1) {
		snprintf(err, errlen, "dropping capabilities: %s%s", nthreads < 0 ?
			 "/proc/self/task: " : "other threads exist, which would keep them (the "
			 "drop must come before any thread starts)", nthreads < 0 ?
			 strerror(-nthreads) : "");
		return nthreads < 0 ? nthreads : -EBUSY;
	}
	held = cap_get_proc();
	work = held ? cap_dup(held) : NULL;
	if (!work) {
		rc = -errno;
		snprintf(err, errlen, "reading this process's capabilities: %s", strerror(-rc));
		goto out;
	}
	/* does the loop still need one? its own call, with an empty effective set */
	rc = cap_clear_flag(work, CAP_EFFECTIVE) ? -errno : set_proc(work, "probe", err, errlen);
	if (rc)
		goto out;
	probe = src->probe ? src->probe(src->impl) : 0;
	rc = set_proc(held, "restoring after the probe", err, errlen);
	if (rc)
		goto out;
	if (probe == -EPERM || probe == -EACCES) {
		if (!has(held, CAP_BPF, CAP_PERMITTED)) {
			snprintf(err, errlen, "reading the eBPF maps needs CAP_BPF on this kernel "
				 "(kernel.unprivileged_bpf_disabled), which is not held");
			rc = -EPERM;
			goto out;
		}
		keep = CAP_BPF;
	} else if (probe) {
		snprintf(err, errlen, "reading the eBPF maps without capabilities: %s",
			 strerror(-probe));
		rc = probe;
		goto out;
	}
	/* root: no execve may give uid 0 its capabilities back (bounding set, SECBIT_NOROOT) */
	setpcap = has(held, CAP_SETPCAP, CAP_EFFECTIVE);
	if (setpcap) {
		for (cap_value_t v = 0; v < (cap_value_t)cap_max_bits(); v++) {
			if (v != keep && cap_drop_bound(v)) {
				rc = -errno;
				snprintf(err, errlen, "dropping capability %d from the bounding set: "
					 "%s", v, strerror(-rc));
				goto out;
			}
		}
		if (prctl(PR_SET_SECUREBITS, prctl(PR_GET_SECUREBITS) | SECBIT_NOROOT |
						     SECBIT_NOROOT_LOCKED)) {
			rc = -errno;
			snprintf(err, errlen, "setting SECBIT_NOROOT: %s", strerror(-rc));
			goto out;
		}
	}
	/* no execve gains privileges (file capabilities, set-uid) whatever the bounding set */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) {
		rc = -errno;
		snprintf(err, errlen, "setting no_new_privs: %s", strerror(-rc));
		goto out;
	}
	if (cap_reset_ambient()) {
		rc = -errno;
		snprintf(err, errlen, "clearing the ambient capabilities: %s", strerror(-rc));
		goto out;
	}
	permitted_names(held, keep, dropped, sizeof(dropped), &ndropped);
	cap_clear(work);
	if (keep >= 0 && (cap_set_flag(work, CAP_EFFECTIVE, 1, &keep, CAP_SET) ||
			  cap_set_flag(work, CAP_PERMITTED, 1, &keep, CAP_SET))) {
		rc = -errno;
		snprintf(err, errlen, "dropping capabilities: %s", strerror(-rc));
		goto out;
	}
	rc = set_proc(work, "final", err, errlen);
	if (rc)
		goto out;
	out->kept_mask = keep >= 0 ? 1ull << keep : 0;
	out->bounding_cleared = setpcap;
	rc = tv_capture_check_threads(out, NULL, err, errlen); /* what the kernel says now */
	if (rc)
		goto out;
	fprintf(stderr, "tracevault: capabilities dropped after the %s: %s%s; kept: %s; "
		"no_new_privs set%s; before any other thread started (each inherits this)\n",
		mode == TV_CAPTURE_MODE_SOCKFILTER ? "load and the packet socket's bind"
						   : "load, attach and /proc seeding",
		ndropped > 8 ? "all held" : ndropped ? dropped : "none held",
		ndropped > 8 ? " by root (uid 0 stays, its privileges go)" : "",
		keep >= 0	? "CAP_BPF (this kernel refuses bpf() map reads without it)"
		: src->probe	? "none (the loop's ring and map reads need none on this kernel: "
				  "probed)"
				: "none (the loop reads only its packet ring and socket)",
		setpcap ? ", bounding set cleared, SECBIT_NOROOT locked" : "");
out:
	cap_free(work);
	cap_free(held);
	return rc;
}

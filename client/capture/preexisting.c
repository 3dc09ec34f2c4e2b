/* Seeds the kernel's `seeds` map with the TCP connections already open when the capture
 * starts: walks /proc/PID/fd for socket inodes, finds them in the process's network namespace
 * (/proc/PID/net/tcp{,6}, read once per namespace) and inserts those that pass the filters,
 * keyed by inode number (user space cannot name the struct sock that keys `sockets`); the
 * kernel moves an entry to `sockets` at the socket's first event, in whichever process.
 *
 * Why after the attach, not before: every order leaves a window, and this one loses least.
 * - Seeding first, a connection accepted between the walk and the attach is seen by neither;
 *   one closed in that window leaves an entry that no close program removes, and when a file
 *   later gets the same fd number its reads would be copied as socket data.
 * - Attaching first, a socket accepted or connected after the attach is the kernel's: it
 *   inserted it (BPF_ANY) and our BPF_NOEXIST insert leaves it alone. A seeded entry is
 *   removed by the close program like any other, and an fd closed and reused by accept or
 *   connect gets its entry replaced. What remains is a socket closed between our readlink and
 *   our insert (its close found nothing to delete): so after each insert we read the fd link
 *   again, and if it no longer names the same socket we delete the entry, if it is still ours
 *   (same gen). Only data moved on a reused fd in the microseconds between insert and that
 *   check could be copied wrongly, and a kernel insert landing between our lookup and delete
 *   would be dropped (its connection then looks like the ones before this feature).
 * The walk itself takes time: bytes moved on a connection before its insert are not seen, so
 * its first event may be the middle of a message; conn_table.c starts such a connection's
 * parsers waiting for a message start (tv_http_parser_join_midstream: no resync counted), and
 * an unpaired response makes no record. */
#include "capture/preexisting.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bpf/bpf.h>

#define PROC_PATH_BYTES 64
/* "socket:[18446744073709551615]" and then some: a longer link is not a socket */
#define FD_LINK_BYTES 64
/* /proc/PID/comm and /proc/PID/cgroup (on a hybrid host one line per v1 hierarchy) */
#define PROC_FILE_BYTES (PATH_MAX + 1024)

/* The sockets of one network namespace. */
struct netns {
	dev_t dev;
	ino_t ino;
	struct tv_proc_tcp_entry *socks; /* with an inode and not listening, sorted by inode */
	size_t n_socks, cap_socks;
	struct tv_event_addr *listen; /* local addresses of LISTEN sockets */
	size_t n_listen, cap_listen;
};

/* One walk; released by ctx_free. */
struct seed_ctx {
	int map_fd;
	uint64_t *seeds_left; /* the kernel's count of `seeds` entries (shared memory) */
	const struct tv_seed_filter *f;
	uint64_t gen_ns;
	struct tv_seed_stats *st;
	char *cg_rel;    /* --cgroup as /proc/PID/cgroup shows it ("/a/b"), or NULL */
	struct netns *ns; /* namespaces read so far (usually one) */
	size_t n_ns;
	/* the capturing process's connections and their namespace: their far ends are skipped */
	dev_t self_dev;
	ino_t self_ino;
	struct tv_proc_tcp_entry *self_conns;
	size_t n_self, cap_self;
	char *err;
	size_t errlen;
};

/* ---- /proc/net/tcp{,6} ---- */

static int hex_word(const char *s, uint32_t *w)
{
	uint32_t v = 0;

	for (int i = 0; i < 8; i++) {
		int c = s[i], d;

		if (c >= '0' && c <= '9')
			d = c - '0';
		else if (c >= 'A' && c <= 'F')
			d = c - 'A' + 10;
		else if (c >= 'a' && c <= 'f')
			d = c - 'a' + 10;
		else
			return -EINVAL;
		v = v << 4 | (uint32_t)d;
	}
	*w = v;
	return 0;
}

/* The kernel prints each 32-bit word of the address as the hex of its in-memory value
 * (%08X), so storing the parsed words back in host order gives the network-order bytes. */
static int parse_addr(const char *hex, size_t len, unsigned port, int v6, struct tv_event_addr *a)
{
	size_t words = v6 ? 4 : 1;

	if (len != words * 8 || port > 0xffff)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	for (size_t i = 0; i < words; i++) {
		uint32_t w;

		if (hex_word(hex + 8 * i, &w))
			return -EINVAL;
		memcpy(a->addr + 4 * i, &w, sizeof(w));
	}
	a->port = (uint16_t)port;
	a->family = v6 ? AF_INET6 : AF_INET;
	return 0;
}

static int is_v4_mapped(const uint8_t a[16])
{
	static const uint8_t prefix[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	return memcmp(a, prefix, sizeof(prefix)) == 0;
}

static void v4_unmap(struct tv_event_addr *a)
{
	memmove(a->addr, a->addr + 12, 4);
	memset(a->addr + 4, 0, 12);
	a->family = AF_INET;
}

int tv_proc_tcp_parse_line(const char *line, int v6, struct tv_proc_tcp_entry *e)
{
	char l_hex[40], r_hex[40];
	unsigned l_port, r_port, state;
	uint64_t inode;

	/* sl: local:port remote:port st tx:rx tr:when retrnsmt uid timeout inode ... */
	if (sscanf(line, " %*u: %39[0-9A-Fa-f]:%x %39[0-9A-Fa-f]:%x %x %*x:%*x %*x:%*x %*x %*u %*u "
			 "%" SCNu64,
		   l_hex, &l_port, r_hex, &r_port, &state, &inode) != 6 || state > 0xff)
		return -EINVAL;
	if (parse_addr(l_hex, strlen(l_hex), l_port, v6, &e->local) ||
	    parse_addr(r_hex, strlen(r_hex), r_port, v6, &e->remote))
		return -EINVAL;
	/* as capture.bpf.c reports a dual-stack socket's IPv4 peer; a listener's remote is ::,
	 * so it keeps its (mapped) family: listened() compares in mapped form anyway */
	if (v6 && is_v4_mapped(e->local.addr) && is_v4_mapped(e->remote.addr)) {
		v4_unmap(&e->local);
		v4_unmap(&e->remote);
	}
	e->state = (uint8_t)state;
	e->inode = inode;
	return 0;
}

/* Room for one more element in *v (*cap elements of size bytes). */
static int grow(void **v, size_t *cap, size_t n, size_t size)
{
	size_t c = *cap ? *cap * 2 : 64;
	void *p;

	if (n < *cap)
		return 0;
	p = realloc(*v, c * size);
	if (!p)
		return -ENOMEM;
	*v = p;
	*cap = c;
	return 0;
}

/* Adds one table file to ns. A missing tcp6 (IPv6 disabled) is an empty table. */
static int read_table(struct netns *ns, const char *path, int v6)
{
	FILE *fp = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;
	int rc = 0;

	if (!fp)
		return v6 && errno == ENOENT ? 0 : -errno;
	while (getline(&line, &cap, fp) > 0) {
		struct tv_proc_tcp_entry e;

		if (tv_proc_tcp_parse_line(line, v6, &e))
			continue; /* the header line */
		if (e.state == TV_TCP_LISTEN) {
			rc = grow((void **)&ns->listen, &ns->cap_listen, ns->n_listen,
				  sizeof(*ns->listen));
			if (rc)
				goto cleanup;
			ns->listen[ns->n_listen++] = e.local;
		} else if (e.inode) {
			rc = grow((void **)&ns->socks, &ns->cap_socks, ns->n_socks,
				  sizeof(*ns->socks));
			if (rc)
				goto cleanup;
			ns->socks[ns->n_socks++] = e;
		}
	}
	if (ferror(fp))
		rc = -EIO;
cleanup:
	free(line);
	fclose(fp);
	return rc;
}

static int cmp_inode(const void *a, const void *b)
{
	uint64_t x = ((const struct tv_proc_tcp_entry *)a)->inode;
	uint64_t y = ((const struct tv_proc_tcp_entry *)b)->inode;

	return x < y ? -1 : x > y;
}

static const struct tv_proc_tcp_entry *find_sock(const struct netns *ns, uint64_t inode)
{
	struct tv_proc_tcp_entry key = { .inode = inode };

	return ns->n_socks ? bsearch(&key, ns->socks, ns->n_socks, sizeof(key), cmp_inode) : NULL;
}

static void mapped_form(const struct tv_event_addr *a, uint8_t out[16])
{
	if (a->family == AF_INET) {
		memset(out, 0, 10);
		out[10] = out[11] = 0xff;
		memcpy(out + 12, a->addr, 4);
	} else {
		memcpy(out, a->addr, 16);
	}
}

/* Does a LISTEN socket of the namespace take connections on local (its port, and its address
 * or a wildcard: 0.0.0.0 and :: are both all zero bytes)? Then we are the accepting side. A
 * [::] listener also takes IPv4 (mapped) unless IPV6_V6ONLY; that nuance is not visible here. */
static int listened(const struct netns *ns, const struct tv_event_addr *local)
{
	static const uint8_t any[16];
	uint8_t want[16], have[16];

	mapped_form(local, want);
	for (size_t i = 0; i < ns->n_listen; i++) {
		if (ns->listen[i].port != local->port)
			continue;
		if (memcmp(ns->listen[i].addr, any, sizeof(any)) == 0)
			return 1;
		mapped_form(&ns->listen[i], have);
		if (memcmp(have, want, sizeof(want)) == 0)
			return 1;
	}
	return 0;
}

/* The network namespace of pid, its tables read on first use. -ENOENT/-ESRCH: pid is gone. */
static int netns_of(struct seed_ctx *x, const char *pid, struct netns **out)
{
	char path[PROC_PATH_BYTES];
	struct netns *ns;
	struct stat sb;
	int rc;

	snprintf(path, sizeof(path), "/proc/%s/ns/net", pid);
	if (stat(path, &sb))
		return -errno;
	for (size_t i = 0; i < x->n_ns; i++) {
		if (x->ns[i].dev == sb.st_dev && x->ns[i].ino == sb.st_ino) {
			*out = &x->ns[i];
			return 0;
		}
	}
	ns = realloc(x->ns, (x->n_ns + 1) * sizeof(*ns));
	if (!ns)
		return -ENOMEM;
	x->ns = ns;
	ns = &x->ns[x->n_ns++];
	memset(ns, 0, sizeof(*ns));
	ns->dev = sb.st_dev;
	ns->ino = sb.st_ino;
	snprintf(path, sizeof(path), "/proc/%s/net/tcp", pid);
	rc = read_table(ns, path, 0);
	if (!rc) {
		snprintf(path, sizeof(path), "/proc/%s/net/tcp6", pid);
		rc = read_table(ns, path, 1);
	}
	if (rc) { /* forget it: another process of the namespace may read it */
		free(ns->socks);
		free(ns->listen);
		x->n_ns--;
		return rc;
	}
	/* a namespace without established connections has no table (NULL), which qsort must
	 * not be given (a nonnull argument): capture seeds before its own connection to the
	 * server exists, so on a quiet host there may be none */
	if (ns->n_socks)
		qsort(ns->socks, ns->n_socks, sizeof(*ns->socks), cmp_inode);
	*out = ns;
	return 0;
}

/* ---- per process ---- */

/* The whole of a small /proc file, NUL-terminated. Bytes read, or a negative errno. */
static ssize_t read_small(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = read(fd, buf, size - 1);
	if (n < 0)
		n = -errno;
	else
		buf[n] = 0;
	close(fd);
	return n;
}

/* 1 when pid passes --comm and --cgroup, 0 when not, a negative errno when unreadable. */
static int process_wanted(struct seed_ctx *x, const char *pid)
{
	char path[PROC_PATH_BYTES], buf[PROC_FILE_BYTES];
	ssize_t n;

	if (x->f->comm) {
		snprintf(path, sizeof(path), "/proc/%s/comm", pid);
		n = read_small(path, buf, sizeof(buf));
		if (n < 0)
			return (int)n;
		buf[strcspn(buf, "\n")] = 0;
		if (strcmp(buf, x->f->comm) != 0)
			return 0;
	}
	if (x->cg_rel) {
		size_t len = strlen(x->cg_rel);
		char *p;

		snprintf(path, sizeof(path), "/proc/%s/cgroup", pid);
		n = read_small(path, buf, sizeof(buf));
		if (n < 0)
			return (int)n;
		/* the v2 line is "0::/path"; v1 lines (hybrid hosts) name their controllers */
		p = strncmp(buf, "0::", 3) == 0 ? buf : strstr(buf, "\n0::");
		if (!p)
			return 0;
		p += p == buf ? 3 : 4;
		p[strcspn(p, "\n")] = 0;
		if (strcmp(x->cg_rel, "/") != 0 &&
		    !(strncmp(p, x->cg_rel, len) == 0 && (p[len] == 0 || p[len] == '/')))
			return 0;
	}
	return 1;
}

/* The socket inode an fd link names ("socket:[N]"), or 0 for anything else. */
static uint64_t fd_socket_inode(int dir_fd, const char *name)
{
	char link[FD_LINK_BYTES];
	ssize_t n = readlinkat(dir_fd, name, link, sizeof(link) - 1);
	uint64_t ino = 0;
	char end = 0;

	if (n <= 0)
		return 0;
	link[n] = 0;
	if (sscanf(link, "socket:[%" SCNu64 "%c", &ino, &end) != 2 || end != ']')
		return 0;
	return ino;
}

static int addr_eq(const struct tv_event_addr *a, const struct tv_event_addr *b)
{
	return a->family == b->family && a->port == b->port &&
	       memcmp(a->addr, b->addr, sizeof(a->addr)) == 0;
}

/* Is e the far end of one of the capturing process's own connections? */
static int own_peer(const struct seed_ctx *x, const struct netns *ns,
		    const struct tv_proc_tcp_entry *e)
{
	if (ns->dev != x->self_dev || ns->ino != x->self_ino)
		return 0;
	for (size_t i = 0; i < x->n_self; i++)
		if (addr_eq(&x->self_conns[i].local, &e->remote) &&
		    addr_eq(&x->self_conns[i].remote, &e->local))
			return 1;
	return 0;
}

/* Our seed was inserted for a fd that was closed meanwhile: delete it unless the kernel took
 * it already (it counts that itself). */
static void unseed(struct seed_ctx *x, uint64_t key)
{
	struct tv_sock_info si;

	x->st->seeded--;
	x->st->closed++;
	if (bpf_map_lookup_elem(x->map_fd, &key, &si) == 0 && si.gen == x->gen_ns &&
	    bpf_map_delete_elem(x->map_fd, &key) == 0)
		__atomic_fetch_sub(x->seeds_left, 1, __ATOMIC_SEQ_CST);
}

/* Insert one socket (fd `name` of pid, in dir_fd = /proc/PID/fd) found in ns. 0, or a
 * negative errno (map error) with err set. */
static int seed_socket(struct seed_ctx *x, uint32_t pid, int dir_fd, const char *name, int fd,
		       const struct tv_proc_tcp_entry *e, const struct netns *ns)
{
	uint64_t key = e->inode;
	struct tv_sock_info si;
	int rc;

	if (x->st->seeded >= TV_CAPTURE_MAX_SOCKETS) {
		x->st->map_full++;
		return 0;
	}
	memset(&si, 0, sizeof(si));
	si.gen = x->gen_ns;
	si.ino = e->inode;
	si.local = e->local;
	si.remote = e->remote;
	si.role = listened(ns, &e->local) ? TV_ROLE_SERVER : TV_ROLE_CLIENT;
	if (x->f->role && si.role != x->f->role)
		return 0; /* --role: the other end is not followed, as at accept/connect */
	/* counted before the insert: the kernel may adopt (and uncount) it at once */
	__atomic_fetch_add(x->seeds_left, 1, __ATOMIC_SEQ_CST);
	if (bpf_map_update_elem(x->map_fd, &key, &si, BPF_NOEXIST)) {
		rc = -errno;
		__atomic_fetch_sub(x->seeds_left, 1, __ATOMIC_SEQ_CST);
		if (rc == -EEXIST) { /* another descriptor of a socket seeded already */
			x->st->already_tracked++;
			return 0;
		}
		if (rc == -E2BIG) {
			x->st->map_full++;
			return 0;
		}
		snprintf(x->err, x->errlen, "adding fd %d of pid %" PRIu32 " to the seeds map: %s",
			 fd, pid, strerror(-rc));
		return rc;
	}
	x->st->seeded++;
	if (fd_socket_inode(dir_fd, name) != e->inode)
		unseed(x, key);
	return 0;
}

/* A process could not be read (rc < 0): one that exited meanwhile (its sockets closed with
 * it) is no loss; another reason is counted. Only running out of memory stops the walk. */
static int process_unreadable(struct seed_ctx *x, const char *pid, int rc)
{
	if (rc == -ENOMEM) {
		snprintf(x->err, x->errlen, "out of memory reading /proc/%s", pid);
		return rc;
	}
	if (rc < 0 && rc != -ENOENT && rc != -ESRCH)
		x->st->procs_unreadable++;
	return 0;
}

/* Seeds the sockets of one process (pid: a /proc entry name). 0, or a negative errno with
 * err set for what must stop the walk; a process that exited or cannot be read is skipped. */
static int seed_process(struct seed_ctx *x, const char *pid_str)
{
	char path[PROC_PATH_BYTES];
	uint32_t pid = (uint32_t)strtoul(pid_str, NULL, 10);
	struct netns *ns = NULL;
	struct dirent *d;
	DIR *dir;
	int rc;

	if (pid == x->f->self_tgid)
		return 0;
	rc = process_wanted(x, pid_str);
	if (rc <= 0)
		return process_unreadable(x, pid_str, rc);
	snprintf(path, sizeof(path), "/proc/%s/fd", pid_str);
	dir = opendir(path);
	if (!dir)
		return process_unreadable(x, pid_str, -errno);
	rc = 0;
	while ((d = readdir(dir)) != NULL) {
		const struct tv_proc_tcp_entry *e;
		uint64_t ino;
		char *end;
		long fd = strtol(d->d_name, &end, 10);

		if (*end || end == d->d_name || fd < 0 || fd > INT_MAX)
			continue; /* "." and ".." */
		ino = fd_socket_inode(dirfd(dir), d->d_name);
		if (!ino)
			continue;
		if (!ns && (rc = netns_of(x, pid_str, &ns)) != 0) {
			rc = process_unreadable(x, pid_str, rc);
			break;
		}
		e = find_sock(ns, ino);
		/* not TCP (unix, UDP, netlink), listening, or newer than the tables: then created
		 * after the attach, and the kernel saw its accept/connect */
		if (!e)
			continue;
		if (x->f->port && e->local.port != x->f->port && e->remote.port != x->f->port)
			continue;
		if (own_peer(x, ns, e))
			continue;
		if (e->state != TV_TCP_ESTABLISHED) {
			x->st->not_established++;
			continue;
		}
		rc = seed_socket(x, pid, dirfd(dir), d->d_name, (int)fd, e, ns);
		if (rc)
			break;
	}
	closedir(dir);
	return rc;
}

/* ---- setup ---- */

/* --cgroup as /proc/PID/cgroup writes it: the directory's path below the cgroup2 mount that
 * holds it (mountinfo's root field prefixed, for a mount of a subtree). */
static int resolve_cgroup(struct seed_ctx *x)
{
	char real[PATH_MAX];
	FILE *fp;
	char *line = NULL;
	size_t cap = 0, best = 0;
	int rc = 0, found = 0;

	if (!realpath(x->f->cgroup, real)) {
		rc = -errno;
		snprintf(x->err, x->errlen, "resolving --cgroup %s: %s", x->f->cgroup, strerror(-rc));
		return rc;
	}
	fp = fopen("/proc/self/mountinfo", "re");
	if (!fp) {
		rc = -errno;
		snprintf(x->err, x->errlen, "reading /proc/self/mountinfo: %s", strerror(-rc));
		return rc;
	}
	while (getline(&line, &cap, fp) > 0) {
		char root[PATH_MAX], mnt[PATH_MAX], fstype[64];
		const char *sep = strstr(line, " - ");
		size_t len;
		char *rel;

		/* id parent major:minor root mount-point options ... - fstype source options */
		if (!sep || sscanf(line, "%*s %*s %*s %4095s %4095s", root, mnt) != 2 ||
		    sscanf(sep, " - %63s", fstype) != 1 || strcmp(fstype, "cgroup2") != 0)
			continue;
		len = strcmp(mnt, "/") == 0 ? 0 : strlen(mnt);
		if (strncmp(real, mnt, len) != 0 || (real[len] && real[len] != '/') ||
		    (found && len <= best))
			continue; /* not below this mount, or below a deeper one already */
		if (strcmp(root, "/") == 0)
			root[0] = 0;
		rel = malloc(strlen(root) + strlen(real + len) + 2);
		if (!rel) {
			rc = -ENOMEM;
			snprintf(x->err, x->errlen, "out of memory");
			goto cleanup;
		}
		/* the mount point itself: "/", every process of the tree */
		sprintf(rel, "%s%s", root, root[0] || real[len] ? real + len : "/");
		free(x->cg_rel);
		x->cg_rel = rel;
		found = 1;
		best = len;
	}
	if (!found) {
		rc = -ENOENT;
		snprintf(x->err, x->errlen, "--cgroup %s is not under a cgroup2 mount", real);
	}
cleanup:
	free(line);
	fclose(fp);
	return rc;
}

/* The capturing process's own established connections, so that their far ends (tracevaultd's
 * side of our gRPC stream) are never seeded: the kernel side excludes only our own tgid. */
static int load_self(struct seed_ctx *x)
{
	struct netns *ns = NULL;
	struct dirent *d;
	struct stat sb;
	DIR *dir;
	int rc = 0;

	if (stat("/proc/self/ns/net", &sb) || !(dir = opendir("/proc/self/fd"))) {
		rc = -errno;
		snprintf(x->err, x->errlen, "reading /proc/self: %s", strerror(-rc));
		return rc;
	}
	x->self_dev = sb.st_dev;
	x->self_ino = sb.st_ino;
	while ((d = readdir(dir)) != NULL) {
		const struct tv_proc_tcp_entry *e;
		uint64_t ino = fd_socket_inode(dirfd(dir), d->d_name);

		if (!ino)
			continue;
		if (!ns && (rc = netns_of(x, "self", &ns)) != 0) {
			snprintf(x->err, x->errlen, "reading /proc/self/net/tcp: %s", strerror(-rc));
			break;
		}
		e = find_sock(ns, ino);
		if (!e)
			continue;
		rc = grow((void **)&x->self_conns, &x->cap_self, x->n_self, sizeof(*x->self_conns));
		if (rc) {
			snprintf(x->err, x->errlen, "out of memory");
			break;
		}
		x->self_conns[x->n_self++] = *e;
	}
	closedir(dir);
	return rc;
}

static void ctx_free(struct seed_ctx *x)
{
	for (size_t i = 0; i < x->n_ns; i++) {
		free(x->ns[i].socks);
		free(x->ns[i].listen);
	}
	free(x->ns);
	free(x->self_conns);
	free(x->cg_rel);
}

int tv_capture_seed_sockets(int seeds_map_fd, uint64_t *seeds_left,
			    const struct tv_seed_filter *f, uint64_t gen_ns, struct tv_seed_stats *st,
			    char *err, size_t errlen)
{
	struct seed_ctx x = {
		.map_fd = seeds_map_fd, .seeds_left = seeds_left, .f = f, .gen_ns = gen_ns, .st = st,
		.err = err, .errlen = errlen,
	};
	char pid[16];
	struct dirent *d;
	DIR *proc = NULL;
	int rc;

	memset(st, 0, sizeof(*st));
	err[0] = 0;
	if (f->cgroup && (rc = resolve_cgroup(&x)) != 0)
		goto cleanup;
	rc = load_self(&x);
	if (rc)
		goto cleanup;
	if (f->tgid) { /* --pid: that process only (the kernel side tracks only its sockets) */
		snprintf(pid, sizeof(pid), "%" PRIu32, f->tgid);
		rc = seed_process(&x, pid);
		goto cleanup;
	}
	proc = opendir("/proc");
	if (!proc) {
		rc = -errno;
		snprintf(err, errlen, "opening /proc: %s", strerror(-rc));
		goto cleanup;
	}
	while ((d = readdir(proc)) != NULL) {
		if (d->d_name[0] < '1' || d->d_name[0] > '9' ||
		    d->d_name[strspn(d->d_name, "0123456789")])
			continue; /* not a process */
		rc = seed_process(&x, d->d_name);
		if (rc)
			break;
	}
cleanup:
	if (proc)
		closedir(proc);
	ctx_free(&x);
	return rc;
}

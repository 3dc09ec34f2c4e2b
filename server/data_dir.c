/* The data dir's checks and permissions before anything in it is used (see data_dir.h and
 * server/RECOVERY.md). Everything is relative to one O_DIRECTORY descriptor, without following
 * symlinks, so what is checked is what is later opened. */
#define _GNU_SOURCE
#include "server/data_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/errf.h"
#include "server/catalog.h"
#include "server/store_uring.h"

#define DIR_MODE 0700
#define FILE_MODE 0600
#define FORMAT_READ_BYTES 64

/* The names tracevaultd creates at the top of DIR; the first three are directories. */
static const char *const LAYOUT[] = {
	TV_STORE_BLOCKS_DIR, TV_STORE_TMP_DIR, TV_STORE_QUARANTINE_DIR,
	TV_CATALOG_FILE,     TV_CATALOG_FILE "-wal", TV_CATALOG_FILE "-shm",
	TV_CATALOG_FILE "-journal", TV_DATA_LOCK_FILE, TV_DATA_FORMAT_FILE,
};
#define LAYOUT_DIRS 3
#define LAYOUT_COUNT (sizeof(LAYOUT) / sizeof(LAYOUT[0]))
/* Not ours, but no sign that DIR is someone else's either: the root of a file system mounted
 * as the data dir has it. Allowed beside the layout, never touched. */
#define FS_ROOT_ENTRY "lost+found"

static int in_layout(const char *name)
{
	for (size_t i = 0; i < LAYOUT_COUNT; i++)
		if (!strcmp(name, LAYOUT[i]))
			return 1;
	return 0;
}

/* Call fn for each entry of dir_fd/sub ("" for dir_fd itself) but "." and "..", until fn
 * returns non-zero. 0, fn's value, or a negative errno (-ENOENT when sub is absent). */
static int each_entry(int dir_fd, const char *sub, int (*fn)(int fd, const char *name, void *arg),
		      void *arg)
{
	int fd = openat(dir_fd, *sub ? sub : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	struct dirent *de;
	DIR *d;
	int ret = 0;

	if (fd < 0)
		return -errno;
	d = fdopendir(fd);
	if (!d) {
		ret = -errno;
		close(fd);
		return ret;
	}
	while ((de = readdir(d))) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		ret = fn(dirfd(d), de->d_name, arg);
		if (ret)
			break;
	}
	closedir(d);
	return ret;
}

/* ---- step 2: does DIR look like a data dir? ---- */

/* 1 with our line, 0 when absent or empty, -1 (err set) for anything else. */
static int read_format(int dir_fd, const char *dir, char *err, size_t errlen)
{
	char buf[FORMAT_READ_BYTES + 1], want[64];
	struct stat st;
	ssize_t n;
	int fd = openat(dir_fd, TV_DATA_FORMAT_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	unsigned long v;
	char *end;

	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0)
		return tv_errf(err, errlen, -1, "cannot open %s/%s: %s", dir, TV_DATA_FORMAT_FILE,
			       strerror(errno));
	if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
		close(fd);
		return tv_errf(err, errlen, -1, "%s/%s is not a regular file", dir,
			       TV_DATA_FORMAT_FILE);
	}
	n = read(fd, buf, FORMAT_READ_BYTES);
	close(fd);
	if (n < 0)
		return tv_errf(err, errlen, -1, "cannot read %s/%s: %s", dir, TV_DATA_FORMAT_FILE,
			       strerror(errno));
	if (n == 0)
		return 0; /* created, not yet written when a crash came: as if absent */
	buf[n] = '\0';
	snprintf(want, sizeof(want), TV_DATA_FORMAT_PREFIX "%d\n", TV_DATA_FORMAT_VERSION);
	if (!strcmp(buf, want))
		return 1;
	/* the right line but not its end: say which, not two equal-looking strings */
	if ((size_t)n == strlen(want) - 1 && !strncmp(buf, want, (size_t)n))
		return tv_errf(err, errlen, -1,
			       "%s/%s lacks its final newline (expected '%.*s\\n')", dir,
			       TV_DATA_FORMAT_FILE, (int)strlen(want) - 1, want);
	buf[strcspn(buf, "\n")] = '\0';
	if (!strncmp(buf, TV_DATA_FORMAT_PREFIX, strlen(TV_DATA_FORMAT_PREFIX))) {
		const char *num = buf + strlen(TV_DATA_FORMAT_PREFIX);

		v = strtoul(num, &end, 10);
		if (end != num && !*end && v > TV_DATA_FORMAT_VERSION)
			return tv_errf(err, errlen, -1,
				       "%s was written by a newer tracevaultd (data format "
				       "%lu; this one reads format %d)",
				       dir, v, TV_DATA_FORMAT_VERSION);
	}
	return tv_errf(err, errlen, -1, "%s/%s is not tracevault's: '%.40s' (expected '%.*s')", dir,
		       TV_DATA_FORMAT_FILE, buf, (int)strlen(want) - 1, want);
}

struct layout_scan {
	unsigned entries;
	char foreign[NAME_MAX + 1]; /* the first name (in byte order) not of our layout */
};

static int scan_top(int fd, const char *name, void *arg)
{
	struct layout_scan *sc = arg;

	(void)fd;
	if (!strcmp(name, FS_ROOT_ENTRY))
		return 0;
	sc->entries++;
	if (!in_layout(name) && (!sc->foreign[0] || strcmp(name, sc->foreign) < 0))
		snprintf(sc->foreign, sizeof(sc->foreign), "%s", name);
	return 0;
}

struct blocks_scan {
	unsigned entries, blocks;
};

static int scan_blocks(int fd, const char *name, void *arg)
{
	struct blocks_scan *sc = arg;
	uint64_t id;

	(void)fd;
	sc->entries++;
	if (tv_store_block_name_kind(name, &id) != TV_STORE_FOREIGN)
		sc->blocks++;
	return 0;
}

static int exists_at(int dir_fd, const char *name)
{
	struct stat st;

	return !fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW);
}

static int check_layout(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	struct layout_scan top = { 0 };
	struct blocks_scan blk = { 0 };
	int ret = read_format(d->dir_fd, dir, err, errlen);

	if (ret < 0)
		return ret;
	d->has_format = ret;
	if (d->has_format)
		return 0;
	ret = each_entry(d->dir_fd, "", scan_top, &top);
	if (ret)
		return tv_errf(err, errlen, -1, "cannot list data dir %s: %s", dir, strerror(-ret));
	if (top.entries == 0) {
		d->is_new = 1;
		return 0;
	}
	if (top.foreign[0])
		return tv_errf(err, errlen, -1,
			       "%s does not look like a tracevault data dir: no %s file, "
			       "and '%s' is not part of tracevault's layout (use an empty or new "
			       "directory)",
			       dir, TV_DATA_FORMAT_FILE, top.foreign);
	ret = each_entry(d->dir_fd, TV_STORE_BLOCKS_DIR, scan_blocks, &blk);
	if (ret && ret != -ENOENT && ret != -ENOTDIR && ret != -ELOOP)
		return tv_errf(err, errlen, -1, "cannot list %s/%s: %s", dir, TV_STORE_BLOCKS_DIR,
			       strerror(-ret));
	if (blk.entries && !blk.blocks && !exists_at(d->dir_fd, TV_CATALOG_FILE))
		return tv_errf(err, errlen, -1,
			       "%s does not look like a tracevault data dir: no %s file, "
			       "no %s, and none of the %u entries of %s/ is named as a block file",
			       dir, TV_DATA_FORMAT_FILE, TV_CATALOG_FILE, blk.entries,
			       TV_STORE_BLOCKS_DIR);
	return 0;
}

/* ---- step 3: one owner ---- */

/* "another tracevaultd (pid N) holds DIR" from DIR/lock's pid, when it has one. */
static int in_use(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	char owner[32] = "";
	ssize_t n = 0;
	int fd = openat(d->dir_fd, TV_DATA_LOCK_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);

	if (fd >= 0) {
		n = pread(fd, owner, sizeof(owner) - 1, 0);
		close(fd);
	}
	owner[n > 0 ? n : 0] = '\0';
	owner[strcspn(owner, "\n")] = '\0';
	return tv_errf(err, errlen, -1, "data dir %s is in use: another tracevaultd%s%s%s holds it",
		       dir, owner[0] ? " (pid " : "", owner, owner[0] ? ")" : "");
}

/* One owner per data dir: an exclusive flock on DIR itself and on DIR/lock (0600), taken
 * before anything in the dir is changed and held until exit (the kernel drops them when the
 * process dies, so a crash leaves no stale lock). A second tracevaultd would otherwise run
 * crash recovery on the first one's live temp files and block files. The lock on the
 * directory is the one that cannot be lost: DIR/lock looks like a stale pidfile and may be
 * deleted, and a new DIR/lock would be a new file with no lock on it. The file's lock stays
 * for tracevaultd builds that lock only it; our pid goes into it, so the refusal can name
 * the owner. */
static int lock_dir(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	int fd;

	if (flock(d->dir_fd, LOCK_EX | LOCK_NB))
		return errno == EWOULDBLOCK
			       ? in_use(d, dir, err, errlen)
			       : tv_errf(err, errlen, -1, "cannot lock data dir %s: %s", dir,
					 strerror(errno));
	fd = openat(d->dir_fd, TV_DATA_LOCK_FILE, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0 && errno == ELOOP) /* O_NOFOLLOW's answer for a symlink: say that */
		return tv_errf(err, errlen, -1, "%s/lock is a symlink, not tracevaultd's lock file: "
			       "remove it (tracevaultd makes the file again)", dir);
	if (fd < 0)
		return tv_errf(err, errlen, -1, "cannot open %s/lock: %s", dir, strerror(errno));
	if (flock(fd, LOCK_EX | LOCK_NB)) {
		int e = errno;

		close(fd);
		if (e == EWOULDBLOCK)
			return in_use(d, dir, err, errlen);
		return tv_errf(err, errlen, -1, "cannot lock %s/lock: %s", dir, strerror(e));
	}
	if (ftruncate(fd, 0) || dprintf(fd, "%ld\n", (long)getpid()) < 0)
		fprintf(stderr, "tracevaultd: writing the pid into %s/lock: %s\n", dir,
			strerror(errno));
	d->lock_fd = fd;
	return 0;
}

/* ---- step 4: the store's directories are directories ---- */

/* A directory others may write in: they could have put, swapped or removed files in it, so
 * nothing there can be trusted to be what tracevaultd wrote (the mode is not fixed, the
 * operator decides). -1 with the reason in err, else 0. */
static int writable_by_others(const char *dir, const char *sub, const struct stat *st, char *err,
			      size_t errlen)
{
	if (!(st->st_mode & (S_IWGRP | S_IWOTH)))
		return 0;
	return tv_errf(err, errlen, -1,
		       "%s%s%s is %s-writable (mode %04o): another user could have changed "
		       "what is in it; check it, then chmod 700 it",
		       dir, *sub ? "/" : "", sub,
		       st->st_mode & S_IWOTH ? "world" : "group", (unsigned)(st->st_mode & 07777));
}

static int check_subdirs(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	struct stat st;

	for (size_t i = 0; i < LAYOUT_DIRS; i++) {
		if (fstatat(d->dir_fd, LAYOUT[i], &st, AT_SYMLINK_NOFOLLOW)) {
			if (errno == ENOENT)
				continue;
			return tv_errf(err, errlen, -1, "cannot stat %s/%s: %s", dir, LAYOUT[i],
				       strerror(errno));
		}
		if (!S_ISDIR(st.st_mode))
			return tv_errf(err, errlen, -1,
				       "%s/%s is %s, not a directory: tracevaultd keeps "
				       "its files in DIR itself (move it away)",
				       dir, LAYOUT[i],
				       S_ISLNK(st.st_mode) ? "a symlink" : "a file");
		if (writable_by_others(dir, LAYOUT[i], &st, err, errlen))
			return -1;
		if (i == 0)
			d->blocks_present = 1;
	}
	return 0;
}

/* ---- step 5: permissions ---- */

struct fix {
	char path[2 * NAME_MAX + 2]; /* relative to DIR */
	mode_t from, to;
};

struct perms {
	uid_t uid;
	unsigned foreign;
	char first_foreign[2 * NAME_MAX + 2];
	uid_t first_foreign_uid;
	struct fix *fixes;
	size_t nfixes, cap;
	int err;
};

/* Check one entry: owner, and the mode it should have (symlinks and special files aside). */
static void check_entry(struct perms *p, int fd, const char *sub, const char *name,
			const struct stat *st)
{
	mode_t want, mode = st->st_mode & 07777;

	if (S_ISLNK(st->st_mode))
		return; /* not ours to fix: recovery quarantines it from blocks/ and tmp/ */
	if (st->st_uid != p->uid) {
		if (!p->foreign++) {
			snprintf(p->first_foreign, sizeof(p->first_foreign), "%s%s%s", sub,
				 *sub ? "/" : "", name);
			p->first_foreign_uid = st->st_uid;
		}
		return;
	}
	if (S_ISDIR(st->st_mode))
		want = DIR_MODE;
	else if (S_ISREG(st->st_mode))
		want = FILE_MODE;
	else
		return;
	(void)fd;
	if (mode == want)
		return;
	if (p->nfixes == p->cap) {
		size_t ncap = p->cap ? p->cap * 2 : 16;
		struct fix *f = realloc(p->fixes, ncap * sizeof(*f));

		if (!f) {
			p->err = -ENOMEM;
			return;
		}
		p->fixes = f;
		p->cap = ncap;
	}
	snprintf(p->fixes[p->nfixes].path, sizeof(p->fixes[0].path), "%s%s%s", sub,
		 *sub ? "/" : "", name);
	p->fixes[p->nfixes].from = mode;
	p->fixes[p->nfixes].to = want;
	p->nfixes++;
}

struct sub_walk {
	struct perms *p;
	const char *sub;
};

static int perm_sub_entry(int fd, const char *name, void *arg)
{
	struct sub_walk *w = arg;
	struct stat st;

	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	check_entry(w->p, fd, w->sub, name, &st);
	return w->p->err;
}

static int perm_top_entry(int fd, const char *name, void *arg)
{
	struct perms *p = arg;
	struct stat st;

	if (!in_layout(name)) {
		if (strcmp(name, FS_ROOT_ENTRY))
			fprintf(stderr, "tracevaultd: leaving %s alone: not part of tracevault's "
				"layout\n", name);
		return 0;
	}
	if (fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW))
		return errno == ENOENT ? 0 : -errno;
	check_entry(p, fd, "", name, &st);
	return p->err;
}

static int enforce_perms(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	struct perms p = { .uid = geteuid() };
	struct stat st;
	unsigned logged = 0;
	int ret;

	if (fstat(d->dir_fd, &st))
		return tv_errf(err, errlen, -1, "cannot stat data dir %s: %s", dir,
			       strerror(errno));
	check_entry(&p, d->dir_fd, "", ".", &st); /* fchmodat(dir_fd, ".") is DIR itself */
	ret = each_entry(d->dir_fd, "", perm_top_entry, &p);
	for (size_t i = 0; !ret && i < LAYOUT_DIRS; i++) {
		struct sub_walk w = { .p = &p, .sub = LAYOUT[i] };

		ret = each_entry(d->dir_fd, LAYOUT[i], perm_sub_entry, &w);
		if (ret == -ENOENT)
			ret = 0;
	}
	if (ret) {
		tv_errf(err, errlen, -1, "cannot check the permissions in %s: %s", dir,
			strerror(-ret));
		goto out;
	}
	if (p.foreign) {
		ret = tv_errf(err, errlen, -1,
			      "%s/%s is owned by uid %u, not by tracevaultd's uid %u "
			      "(%u such %s): chown %s to uid %u, or run tracevaultd as %s "
			      "owner",
			      dir, p.first_foreign, (unsigned)p.first_foreign_uid, (unsigned)p.uid,
			      p.foreign, p.foreign == 1 ? "entry" : "entries",
			      p.foreign == 1 ? "it" : "them", (unsigned)p.uid,
			      p.foreign == 1 ? "its" : "their");
		goto out;
	}
	for (size_t i = 0; i < p.nfixes; i++) {
		const struct fix *f = &p.fixes[i];

		if (fchmodat(d->dir_fd, f->path, f->to, 0)) {
			ret = tv_errf(err, errlen, -1, "cannot chmod %s/%s to %04o: %s", dir,
				      f->path, (unsigned)f->to, strerror(errno));
			goto out;
		}
		if (logged++ < TV_DATA_PERM_LOG_LINES)
			fprintf(stderr, "tracevaultd: permissions: %s%s%s was %04o, now %04o\n",
				dir, strcmp(f->path, ".") ? "/" : "",
				strcmp(f->path, ".") ? f->path : "", (unsigned)f->from,
				(unsigned)f->to);
	}
	if (p.nfixes > TV_DATA_PERM_LOG_LINES)
		fprintf(stderr, "tracevaultd: permissions: %zu entries of %s fixed in all\n",
			p.nfixes, dir);
out:
	free(p.fixes);
	return ret;
}

int tv_data_dir_open(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);
	struct stat st;

	*d = (struct tv_data_dir){ .dir_fd = -1, .lock_fd = -1 };
	/* DIR itself is opened without following a symlink: whoever can change such a link
	 * chooses where the archive goes (a parent that is one, as mounts are laid out, is fine).
	 * Trailing slashes would make open follow it whatever O_NOFOLLOW says: dropped. */
	while (n > 1 && dir[n - 1] == '/')
		n--;
	if (n >= sizeof(path))
		return tv_errf(err, errlen, -1, "data dir %s: %s", dir, strerror(ENAMETOOLONG));
	memcpy(path, dir, n);
	path[n] = '\0';
	if (!mkdir(path, DIR_MODE))
		d->is_new = 1;
	else if (errno != EEXIST)
		return tv_errf(err, errlen, -1, "cannot create data dir %s: %s", dir,
			       strerror(errno));
	d->dir_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	if (d->dir_fd < 0 && (errno == ELOOP || errno == ENOTDIR) && !lstat(path, &st) &&
	    S_ISLNK(st.st_mode))
		return tv_errf(err, errlen, -1,
			       "data dir %s is a symlink: give the directory it points to as --data",
			       dir);
	if (d->dir_fd < 0)
		return tv_errf(err, errlen, -1,
			       errno == ENOTDIR ? "data dir %s is not a directory"
						: "cannot open data dir %s: %s",
			       dir, strerror(errno));
	if (fstat(d->dir_fd, &st))
		return tv_errf(err, errlen, -1, "cannot stat data dir %s: %s", dir,
			       strerror(errno));
	if (st.st_uid != geteuid())
		return tv_errf(err, errlen, -1,
			       "data dir %s is owned by uid %u, not by tracevaultd's uid "
			       "%u: chown it, or run tracevaultd as its owner",
			       dir, (unsigned)st.st_uid, (unsigned)geteuid());
	if (writable_by_others(dir, "", &st, err, errlen))
		return -1;
	if (!d->is_new && check_layout(d, dir, err, errlen))
		return -1;
	if (lock_dir(d, dir, err, errlen) || check_subdirs(d, dir, err, errlen) ||
	    enforce_perms(d, dir, err, errlen))
		return -1;
	return 0;
}

int tv_data_dir_mark(struct tv_data_dir *d, const char *dir, char *err, size_t errlen)
{
	int fd, ret = 0;

	if (d->has_format)
		return 0;
	/* O_TRUNC: an empty FORMAT (a crash before its write) counts as absent */
	fd = openat(d->dir_fd, TV_DATA_FORMAT_FILE,
		    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, FILE_MODE);
	if (fd < 0)
		return tv_errf(err, errlen, -1, "cannot create %s/%s: %s", dir, TV_DATA_FORMAT_FILE,
			       strerror(errno));
	if (dprintf(fd, TV_DATA_FORMAT_PREFIX "%d\n", TV_DATA_FORMAT_VERSION) < 0 || fsync(fd) ||
	    fsync(d->dir_fd))
		ret = tv_errf(err, errlen, -1, "cannot write %s/%s: %s", dir, TV_DATA_FORMAT_FILE,
			      strerror(errno));
	close(fd);
	if (!ret && !d->is_new)
		fprintf(stderr, "tracevaultd: %s had tracevault's layout and no %s file: adopted "
			"as a data dir of format %d\n", dir, TV_DATA_FORMAT_FILE,
			TV_DATA_FORMAT_VERSION);
	if (!ret)
		d->has_format = 1;
	return ret;
}

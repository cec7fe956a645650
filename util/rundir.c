/*
 * util/rundir.c - a run directory that is ours, and files in it created
 * without following links.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include "util/rundir.h"

int rundir_path(char *buf, size_t len)
{
	const char *env = getenv("PML_MIGRATE_RUNDIR");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	int n;
	if (env && *env)
		n = snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		n = snprintf(buf, len, "/run/pml-migrate");
	else if (xdg && *xdg)
		n = snprintf(buf, len, "%s/pml-migrate", xdg);
	else
		n = snprintf(buf, len, "/tmp/pml-migrate-%u", (unsigned)geteuid());
	if (n < 0 || (size_t)n >= len)
		return -ENAMETOOLONG;
	return 0;
}

/* The checks every directory of ours passes (see rundir_open_private):
 * what names it in messages ("run directory"); oflag is O_PATH or
 * O_RDONLY. */
static int rundir__open_checked(const char *p, int create, int oflag, const char *what, const char *hint, char *why,
				size_t whylen)
{
	struct stat st;
	int e;

	if (create && mkdir(p, 0700) < 0 && errno != EEXIST) {
		e = -errno;
		snprintf(why, whylen, "cannot create %s %s: %s", what, p, strerror(errno));
		return e;
	}
	/* O_NOFOLLOW on the last component: a symlink planted where the
	 * directory should be is refused, not followed. */
	int fd = open(p, oflag | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		e = -errno;
		if (errno == ELOOP || errno == ENOTDIR) {
			snprintf(why, whylen, "%s %s is a symlink or not a directory: refusing it", what, p);
			return -ENOTDIR;
		}
		snprintf(why, whylen, "%s %s: %s", what, p, strerror(errno));
		return e;
	}
	/* Checked on the descriptor we keep, so nothing can be swapped in
	 * between the check and the use. */
	if (fstat(fd, &st) < 0) {
		e = -errno;
		snprintf(why, whylen, "%s %s: %s", what, p, strerror(errno));
		goto err_close;
	}
	if (st.st_uid != geteuid()) {
		e = -EPERM;
		snprintf(why, whylen, "%s %s is owned by uid %u, not by us (uid %u): refusing it (%s)", what, p,
			 (unsigned)st.st_uid, (unsigned)geteuid(), hint);
		goto err_close;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		e = -EACCES;
		snprintf(why, whylen, "%s %s is writable by group or others (mode %03o): refusing it (chmod go-w it)",
			 what, p, (unsigned)(st.st_mode & 0777));
		goto err_close;
	}
	return fd;

err_close:
	close(fd);
	return e;
}

int rundir_open(int create, char *path, size_t pathlen, char *why, size_t whylen)
{
	char p[RUNDIR_MAX_PATH];

	if (rundir_path(p, sizeof(p)) < 0) {
		snprintf(why, whylen, "run directory path too long");
		return -ENAMETOOLONG;
	}
	if (path)
		snprintf(path, pathlen, "%s", p);
	return rundir__open_checked(p, create, O_PATH, "run directory",
				    "remove it, or choose another with --run-dir or PML_MIGRATE_RUNDIR", why, whylen);
}

int rundir_open_private(const char *path, int create, const char *what, char *why, size_t whylen)
{
	return rundir__open_checked(path, create, O_RDONLY, what, "use a directory of your own", why, whylen);
}

int rundir_sock_addr(int dirfd, const char *name, struct sockaddr_un *a)
{
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	if ((size_t)snprintf(a->sun_path, sizeof(a->sun_path), "/proc/self/fd/%d/%s.sock", dirfd, name) >=
	    sizeof(a->sun_path))
		return -ENAMETOOLONG;
	return 0;
}

FILE *rundir_create(int dirfd, const char *name)
{
	if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
		return NULL;
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return NULL;
	FILE *f = fdopen(fd, "w");
	if (!f) {
		int e = errno;
		close(fd);
		errno = e;
	}
	return f;
}

int rundir_write_atomic(int dirfd, const char *name, void (*write)(FILE *f, void *opaque), void *opaque)
{
	return rundir_write_atomic_mode(dirfd, name, 0600, write, opaque);
}

int rundir_write_atomic_mode(int dirfd, const char *name, mode_t mode, void (*write)(FILE *f, void *opaque),
			     void *opaque)
{
	char tmp[RUNDIR_MAX_PATH];
	if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", name) >= sizeof(tmp))
		return -ENAMETOOLONG;
	FILE *f = rundir_create(dirfd, tmp);
	if (!f)
		return -errno;
	if (mode != 0600 && fchmod(fileno(f), mode) < 0) {
		int e = -errno;
		fclose(f);
		unlinkat(dirfd, tmp, 0);
		return e;
	}
	write(f, opaque);
	int e = ferror(f) ? -EIO : 0;
	if (fclose(f) != 0 && !e)
		e = -errno;
	if (!e && renameat(dirfd, tmp, dirfd, name) < 0)
		e = -errno;
	if (e)
		unlinkat(dirfd, tmp, 0);
	return e;
}

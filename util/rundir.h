/*
 * util/rundir.h - the run directory: where VMs' control sockets, consoles
 * and reports live. It is trusted only when it is ours, and everything in
 * it is reached through one checked directory descriptor, never through a
 * path that could be swapped after the check.
 *
 * Which directory: $PML_MIGRATE_RUNDIR (set by --run-dir), else
 * /run/pml-migrate for root, else $XDG_RUNTIME_DIR/pml-migrate, else
 * /tmp/pml-migrate-EUID. It must be a real directory (not a symlink), owned
 * by the effective user, with no group or other write permission.
 *
 * Threads: any; no shared state.
 */
#ifndef PMG_UTIL_RUNDIR_H
#define PMG_UTIL_RUNDIR_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>
#include <sys/un.h>

#define RUNDIR_MAX_PATH 4096

/* The run directory's path (not checked). Returns 0 or -ENAMETOOLONG. */
int rundir_path(char *buf, size_t len);

/* Opens the run directory (creating it 0700 first when create is set and
 * it is absent) and checks that it is ours. Returns an O_PATH directory
 * descriptor (close it with close()), or -errno with why (a one-line
 * reason naming the path and what to do) filled:
 *   -ENOENT  absent (and create not set)
 *   -ENOTDIR a symlink or not a directory
 *   -EPERM   owned by another user
 *   -EACCES  writable by group or others
 * path (optional, pathlen bytes) receives the path for messages. */
int rundir_open(int create, char *path, size_t pathlen, char *why, size_t whylen);

/* Opens another directory that must be ours by the same rules (a real
 * directory, owned by the effective user, not writable by group or
 * others), such as a checkpoint directory: what reads and writes there
 * must be what we wrote. path's last component must not be a symlink
 * (resolve the path first where a link is allowed). create: mkdir it 0700
 * first when absent. Returns an O_RDONLY directory descriptor to reach
 * every file through (openat), or -errno with why filled, naming what
 * ("checkpoint directory") and the path, as rundir_open does. */
int rundir_open_private(const char *path, int create, const char *what, char *why, size_t whylen);

/* The address of NAME's control socket inside dirfd. It goes through
 * /proc/self/fd/DIRFD/, so it always fits sun_path whatever the directory's
 * length, and it names the directory that was checked. Returns 0 or
 * -ENAMETOOLONG. */
int rundir_sock_addr(int dirfd, const char *name, struct sockaddr_un *a);

/* Creates file name in dirfd for writing, mode 0600, replacing any old
 * entry of that name: unlinkat, then O_CREAT|O_EXCL|O_NOFOLLOW, so a
 * planted symlink or hard link is never followed or written through.
 * Returns a stdio stream (caller fcloses) or NULL with errno set. */
FILE *rundir_create(int dirfd, const char *name);

/* Writes a file atomically: creates NAME.tmp as rundir_create does, lets
 * write() fill it, then renames it over name, so a reader never sees half
 * of it. dirfd may be AT_FDCWD (name is then a path). Returns 0 or -errno. */
int rundir_write_atomic(int dirfd, const char *name, void (*write)(FILE *f, void *opaque), void *opaque);
/* The same with the file's mode (e.g. 0644 for a file another user's
 * service reads), set before it gets its name. */
int rundir_write_atomic_mode(int dirfd, const char *name, mode_t mode, void (*write)(FILE *f, void *opaque),
			     void *opaque);

#endif

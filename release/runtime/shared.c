/*
 * The shared mount: runs of the same AppImage by the same user share one mount, which lingers a
 * few seconds after the last run ends. Back-to-back runs then skip mounting and, above all, find
 * the image's files still in the kernel's page cache: a multi-GB model is read once, not at every
 * start (a FUSE file's pages are dropped when it is unmounted).
 *
 * Everything lives in $TMPDIR/appimage-mounts-<uid>, made 0700 and used only while it is a real
 * directory of this user that nobody else can enter (checked on the opened directory: O_NOFOLLOW
 * and fstat, as lstat would, without a race); otherwise runs fall back to private mounts. Names
 * there are keyed by image_identity_key(), the identity of the image file run (identity.c): a run
 * joins a mount only of the very same unchanged file, never one of another image that claims the
 * same squashfs digest:
 *   <key>.lock         flock'ed while a run looks for the server or starts one, so concurrent
 *                      first runs start one server, not several
 *   <key>.sock         the server's socket; a connected run is a client until its connection
 *                      closes (when it exits or is killed), and is told the mount point. An idle
 *                      server removes it before it stops.
 *   <key>.mnt-XXXXXX   the mount point
 * A run that finds no server (none yet, or a dead one whose socket refuses) clears what a dead one
 * left behind and starts one. APPIMAGE_SHARED_MOUNT=0 turns sharing off; APPIMAGE_MOUNT_LINGER
 * sets the seconds a mount outlives its last run (default 5, as set by the run that mounted).
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appimage.h"

#define DEFAULT_LINGER_SECONDS 5
#define MAX_LINGER_SECONDS 3600
#define ANSWER_TIMEOUT_SECONDS 10

int shared_mount_enabled(void)
{
	const char *value = getenv("APPIMAGE_SHARED_MOUNT");
	return !value || strcmp(value, "0") != 0;
}

static int linger_ms(void)
{
	const char *value = getenv("APPIMAGE_MOUNT_LINGER");
	char *end;
	long seconds = value && *value ? strtol(value, &end, 10) : DEFAULT_LINGER_SECONDS;
	if (value && *value && (*end || seconds < 0 || seconds > MAX_LINGER_SECONDS))
		seconds = DEFAULT_LINGER_SECONDS;
	return (int)seconds * 1000;
}

/* Whether others can swap entries of the directory holding ours ($TMPDIR): only if they may write
 * to it and it is not sticky (/tmp is sticky: nobody else may rename or remove our entry). */
static int others_may_swap(const struct stat *parent)
{
	return (parent->st_mode & (S_IWGRP | S_IWOTH)) && !(parent->st_mode & S_ISVTX);
}

/* Opens the per-user directory; -1 (and why, in reason) if it is not safe to use. */
static int open_user_dir(char *path, size_t cap, char *reason, size_t reason_cap)
{
	struct stat st, parent;
	if ((size_t)snprintf(path, cap, "%s/appimage-mounts-%u", temp_dir(), (unsigned)getuid()) >= cap) {
		snprintf(reason, reason_cap, "$TMPDIR is too long a path");
		return -1;
	}
	if (stat(temp_dir(), &parent) != 0 || others_may_swap(&parent)) {
		snprintf(reason, reason_cap, "%s is writable by others and not sticky", temp_dir());
		return -1;
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		snprintf(reason, reason_cap, "cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0)
		snprintf(reason, reason_cap, "%s: %s", path,
			 errno == ELOOP ? "is a symbolic link" : strerror(errno));
	else if (st.st_uid != getuid() || (st.st_mode & 077) != 0)
		snprintf(reason, reason_cap, "%s is not private to this user (owner %u, mode %03o)",
			 path, (unsigned)st.st_uid, (unsigned)(st.st_mode & 0777));
	else
		return fd;
	if (fd >= 0)
		close(fd);
	return -1;
}

static int lock_key(int dir_fd, const char *key)
{
	char name[96];
	snprintf(name, sizeof name, "%s.lock", key);
	int fd = openat(dir_fd, name, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	while (fd >= 0 && flock(fd, LOCK_EX) != 0 && errno == EINTR)
		;
	return fd;
}

/* The socket's address, through /proc/self/fd so it fits sun_path however long $TMPDIR is. */
static struct sockaddr_un socket_address(int dir_fd, const char *key)
{
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	snprintf(addr.sun_path, sizeof addr.sun_path, "/proc/self/fd/%d/%s.sock", dir_fd, key);
	return addr;
}

/* Server side: accepts a waiting run and tells it the mount point; -1 when none is waiting. */
int shared_accept(struct listener *l, const char *mount_dir)
{
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	if (fd < 0)
		return -1;
	if (send(fd, mount_dir, strlen(mount_dir) + 1, MSG_NOSIGNAL) < 0) {
		close(fd);
		return shared_accept(l, mount_dir);
	}
	return fd;
}

/* Server side, idle for the linger time: stop taking runs. One that connects from now on finds
 * no socket, or has its connection reset, and starts a new server. */
void shared_stop_listening(struct listener *l)
{
	char name[96];
	snprintf(name, sizeof name, "%s.sock", l->key);
	unlinkat(l->dir_fd, name, 0);
}

/* Client side: a connection to a live server of this user, and the mount point it serves.
 * -1 with errno ECONNREFUSED or ENOENT when there is no server. */
static int connect_server(int dir_fd, const char *key, char *mount_dir, size_t cap)
{
	struct sockaddr_un addr = socket_address(dir_fd, key);
	struct timeval patience = {.tv_sec = ANSWER_TIMEOUT_SECONDS};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &patience, sizeof patience) != 0)
		goto fail;
	size_t got = 0;
	ssize_t n = 0;
	while (got < cap && (got == 0 || mount_dir[got - 1] != '\0') &&
	       ((n = read(fd, mount_dir + got, cap - got)) > 0 || (n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	if (got >= 2 && mount_dir[got - 1] == '\0')
		return fd;
	errno = n < 0 && errno == EAGAIN ? ETIMEDOUT : ECONNREFUSED; /* hangs, or died before answering */
fail:
	if (fd >= 0)
		close(fd);
	return -1;
}

/* What a dead server left: its socket, and mount points (still mounted, if it was killed). */
static void clear_stale(int dir_fd, const char *dir, const char *key)
{
	char name[96], path[PATH_MAX], helper[PATH_MAX] = "";
	snprintf(name, sizeof name, "%s.sock", key);
	unlinkat(dir_fd, name, 0);
	snprintf(name, sizeof name, "%s.mnt-", key);
	DIR *entries = fdopendir(dup(dir_fd));
	for (struct dirent *e; entries && (e = readdir(entries));) {
		if (strncmp(e->d_name, name, strlen(name)) != 0)
			continue;
		snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
		if (rmdir(path) != 0 && errno == EBUSY) {
			if (!helper[0])
				fusermount_find(helper, sizeof helper);
			fuse_detach(helper, path);
			rmdir(path);
		}
	}
	if (entries)
		closedir(entries);
}

static int listen_at(int dir_fd, const char *key)
{
	struct sockaddr_un addr = socket_address(dir_fd, key);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd >= 0 && (bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(fd, 64) != 0)) {
		close(fd);
		return -1;
	}
	return fd;
}

enum { NOT_SHARED = 2 }; /* a status besides mount_start's: fall back to a private mount */

/* Starts a detached server (double fork: init reaps it) with this run as its first client, and
 * waits until it has mounted. */
static int start_server(const struct image *img, struct listener *l, const char *dir, int lock,
			struct mount *m)
{
	int ready[2] = {-1, -1}, conn[2] = {-1, -1};
	snprintf(m->dir, sizeof m->dir, "%s/%s.mnt-XXXXXX", dir, l->key);
	if (!mkdtemp(m->dir) || (l->fd = listen_at(l->dir_fd, l->key)) < 0 ||
	    pipe2(ready, O_CLOEXEC) != 0 || pipe2(conn, O_CLOEXEC) != 0) {
		report("not sharing the mount: cannot set it up in %s: %s", dir, strerror(errno));
		for (int i = 0, fds[] = {l->fd, ready[0], ready[1], conn[0]}; i < 4; i++)
			if (fds[i] >= 0)
				close(fds[i]);
		return NOT_SHARED;
	}
	pid_t child = fork();
	if (child == 0) {
		close(lock);
		close(ready[0]);
		close(conn[1]);
		if (fork() == 0)
			serve(img, m, ready[1], conn[0], l, linger_ms());
		_exit(0);
	}
	close(ready[1]);
	close(conn[0]);
	close(l->fd);
	m->conn = conn[1];
	if (child < 0) {
		close(ready[0]);
		return NOT_SHARED;
	}
	waitpid(child, NULL, 0);
	return server_ready(ready[0], m, img);
}

/* With the key's lock held: join the live server, or clear a dead one's leftovers and start one. */
static int join_or_start(const struct image *img, struct listener *l, const char *dir, int lock,
			 struct mount *m)
{
	m->conn = connect_server(l->dir_fd, l->key, m->dir, sizeof m->dir);
	if (m->conn >= 0)
		return 0;
	if (errno != ECONNREFUSED && errno != ENOENT) {
		report("not sharing the mount: its server in %s does not answer", dir);
		return NOT_SHARED;
	}
	clear_stale(l->dir_fd, dir, l->key);
	int status = start_server(img, l, dir, lock, m);
	if (status != 0)
		clear_stale(l->dir_fd, dir, l->key);
	return status;
}

/*
 * Joins the shared mount of img, starting its server if there is none; m->conn keeps this run a
 * client until it exits. Returns like mount_start. When the mount cannot be shared (an unsafe
 * directory, no sockets there, a hung server) it says so in one line and mounts privately.
 */
int shared_mount(const struct image *img, struct mount *m)
{
	char dir[PATH_MAX - 96], reason[PATH_MAX]; /* room in m->dir for /<key>.mnt-XXXXXX */
	struct listener l = {.fd = -1};
	memset(m, 0, sizeof *m);
	if (fuse_device_missing(m))
		return 1;
	if (!image_identity_key(img, l.key))
		return mount_start(img, m);
	l.dir_fd = open_user_dir(dir, sizeof dir, reason, sizeof reason);
	if (l.dir_fd < 0) {
		report("not sharing the mount: %s", reason);
		return mount_start(img, m);
	}
	int lock = lock_key(l.dir_fd, l.key);
	int status = join_or_start(img, &l, dir, lock, m);
	if (lock >= 0)
		close(lock);
	close(l.dir_fd);
	return status == NOT_SHARED ? mount_start(img, m) : status;
}

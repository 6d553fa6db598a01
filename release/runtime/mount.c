/*
 * Mounting the embedded squashfs with FUSE, in-process (squashfuse's low-level library linked
 * statically with libfuse3, so the target needs neither libfuse2 nor libfuse3).
 *
 * Design: a forked child is the FUSE server. It leaves the terminal's session (so a Ctrl-C aimed
 * at the application does not tear the filesystem down under it), mounts, reports readiness
 * through a pipe and serves until the parent sends SIGTERM; then it unmounts (lazily) and removes
 * the mount point. If the parent dies without cleaning up, PR_SET_PDEATHSIG stops the server, and
 * unprivileged mounts also use fusermount's auto_unmount, so no stale mount survives.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#include "appimage.h"

enum { READY_MOUNTED = 'M', READY_BAD_IMAGE = 'I', READY_NO_FUSE = 'F' };

/* The server has nothing to say on the terminal; it must not hold the caller's pipes open either. */
static void detach_stdio(void)
{
	int null = open("/dev/null", O_RDWR);
	for (int fd = 0; fd < 3 && null >= 0; fd++)
		dup2(null, fd);
	if (null > 2)
		close(null);
}

static sqfs_ll *open_filesystem(const struct image *img)
{
	int fd;
	sqfs_ll *ll = calloc(1, sizeof *ll);
	if (!ll || image_fs_init(img, &ll->fs, &fd) != SQFS_OK)
		return NULL;
	if (sqfs_ll_init(ll) != SQFS_OK)
		return NULL;
	return ll;
}

static struct fuse_session *new_session(const struct image *img, sqfs_ll *ll)
{
	static struct fuse_lowlevel_ops ops = {
		.getattr = sqfs_ll_op_getattr, .opendir = sqfs_ll_op_opendir,
		.releasedir = sqfs_ll_op_releasedir, .readdir = sqfs_ll_op_readdir,
		.lookup = sqfs_ll_op_lookup, .open = sqfs_ll_op_open,
		.create = sqfs_ll_op_create, .release = sqfs_ll_op_release,
		.read = sqfs_ll_op_read, .readlink = sqfs_ll_op_readlink,
		.listxattr = sqfs_ll_op_listxattr, .getxattr = sqfs_ll_op_getxattr,
		.forget = sqfs_ll_op_forget, .statfs = stfs_ll_op_statfs,
	};
	char options[160];
	/* Unprivileged mounts go through fusermount anyway: let it unmount if we are killed. */
	snprintf(options, sizeof options, "ro,nodev,nosuid,fsname=%s,subtype=appimage%s",
		 img->name[0] ? img->name : "appimage", getuid() == 0 ? "" : ",auto_unmount");
	char *argv[] = {"appimage", "-o", options, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	return fuse_session_new(&args, &ops, sizeof ops, ll);
}

static void tell(int fd, char what)
{
	while (write(fd, &what, 1) < 0 && errno == EINTR)
		;
}

static void serve(const struct image *img, const char *dir, int ready, pid_t parent)
{
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	if (getppid() != parent)
		_exit(1);
	setsid();
	detach_stdio();
	sqfs_ll *ll = open_filesystem(img);
	if (!ll) {
		tell(ready, READY_BAD_IMAGE);
		_exit(1);
	}
	struct fuse_session *se = new_session(img, ll);
	if (!se || fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, dir) != 0) {
		tell(ready, READY_NO_FUSE);
		_exit(1);
	}
	tell(ready, READY_MOUNTED);
	close(ready);
	fuse_session_loop(se);
	fuse_session_unmount(se);
	rmdir(dir);
	_exit(0);
}

static char wait_ready(int fd)
{
	char what = 0;
	ssize_t got;
	while ((got = read(fd, &what, 1)) < 0 && errno == EINTR)
		;
	return got == 1 ? what : 0;
}

static int fuse_device_missing(struct mount *m)
{
	if (access("/dev/fuse", R_OK | W_OK) == 0)
		return 0;
	snprintf(m->reason, sizeof m->reason, "/dev/fuse: %s", strerror(errno));
	return 1;
}

/* Returns 0 when mounted at m->dir, 1 when FUSE is unavailable (m->reason says why), -1 on error. */
int mount_start(const struct image *img, struct mount *m)
{
	int ready[2];
	if (path_printf(m->dir, sizeof m->dir, "%s/.mount_%sXXXXXX", temp_dir(), img->name) != 0)
		return -1;
	if (fuse_device_missing(m))
		return 1;
	if (!mkdtemp(m->dir) || pipe2(ready, O_CLOEXEC) != 0) {
		report("cannot create mount point %s: %s", m->dir, strerror(errno));
		return -1;
	}
	pid_t parent = getpid();
	m->server = fork();
	if (m->server == 0)
		serve(img, m->dir, ready[1], parent);
	close(ready[1]);
	char what = m->server > 0 ? wait_ready(ready[0]) : 0;
	close(ready[0]);
	if (what == READY_MOUNTED)
		return 0;
	if (m->server > 0)
		waitpid(m->server, NULL, 0);
	rmdir(m->dir);
	if (what == READY_BAD_IMAGE) {
		report("squashfs image in %s is corrupt: it cannot be opened for mounting", img->path);
		return -1;
	}
	snprintf(m->reason, sizeof m->reason, "the mount failed: no usable /dev/fuse or fusermount3");
	return 1;
}

/* Stops the server (which unmounts); repeats SIGTERM in case one lands between two requests.
 * Polls every millisecond for up to 10 s: the server is usually gone within 2-3 ms, and every
 * run of the AppImage pays this wait on its way out. Then a lazy unmount, whatever the server did. */
void mount_stop(struct mount *m)
{
	int gone = 0;
	for (int tick = 0; tick < 10000 && !gone; tick++) {
		if (tick % 500 == 0)
			kill(m->server, SIGTERM);
		gone = waitpid(m->server, NULL, WNOHANG) == m->server;
		if (!gone)
			usleep(1000);
	}
	if (!gone) {
		kill(m->server, SIGKILL);
		waitpid(m->server, NULL, 0);
	}
	umount2(m->dir, MNT_DETACH); /* a server that died (crashed, killed) leaves its mount behind */
	rmdir(m->dir);
}

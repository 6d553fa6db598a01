/*
 * Attaching a FUSE session to a directory, with or without privileges, and detaching it.
 *
 * Unprivileged (and as root, whenever it is installed) the setuid helper mounts: fusermount3
 * from FUSE 3, else fusermount from FUSE 2. It opens /dev/fuse, mounts it on the directory and
 * hands the device back over a socket: the _FUSE_COMMFD protocol, the same in both versions.
 * libfuse3 only knows fusermount3, so this file speaks the protocol itself, and a system with
 * only FUSE 2 installed still mounts instead of extracting gigabytes. Root without any helper
 * mounts directly through libfuse.
 *
 * With auto_unmount the helper stays behind in a session of its own, watching that socket, and
 * unmounts when the server dies, even if every process of the AppImage is killed. It is not
 * enough on its own: fusermount3 before 3.15 (Debian 12, Ubuntu 22.04) cannot tell that an
 * ordinary user's server died, and a direct mount has no helper at all; mount.c's watchdog
 * covers those.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#include "appimage.h"

static const char *const helpers[] = {"fusermount3", "fusermount"};
static const char fallback_path[] = "/usr/local/bin:/usr/bin:/bin";

static int find_in(const char *dirs, const char *name, char *out, size_t cap)
{
	for (const char *dir = dirs; dir && *dir;) {
		size_t len = strcspn(dir, ":");
		if (len > 0 && (size_t)snprintf(out, cap, "%.*s/%s", (int)len, dir, name) < cap &&
		    access(out, X_OK) == 0)
			return 1;
		dir += len + (dir[len] == ':');
	}
	return 0;
}

/* The helper to mount with: fusermount3, else fusermount, in $PATH or the usual places. Without
 * one, out is "": what fuse_detach takes for a direct mount. */
int fusermount_find(char *out, size_t cap)
{
	for (size_t i = 0; i < sizeof helpers / sizeof helpers[0]; i++)
		if (find_in(getenv("PATH"), helpers[i], out, cap) ||
		    find_in(fallback_path, helpers[i], out, cap))
			return 1;
	out[0] = '\0';
	return 0;
}

static pid_t run_helper(const char *helper, char *const argv[], int comm)
{
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	char fd_number[16];
	if (comm >= 0) {
		snprintf(fd_number, sizeof fd_number, "%d", comm);
		setenv("_FUSE_COMMFD", fd_number, 1);
		fcntl(comm, F_SETFD, 0);
	}
	execv(helper, argv);
	_exit(127);
}

static int receive_fd(int sock)
{
	char byte;
	char control[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = control,
			     .msg_controllen = sizeof control};
	ssize_t got;
	while ((got = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR)
		;
	struct cmsghdr *cmsg = got > 0 ? CMSG_FIRSTHDR(&msg) : NULL;
	if (!cmsg || cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
		return -1;
	int fd;
	memcpy(&fd, CMSG_DATA(cmsg), sizeof fd);
	return fd;
}

static void wait_for(pid_t pid)
{
	while (pid > 0 && waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

/* Mounts through the helper with auto_unmount; returns the /dev/fuse descriptor. The socket the
 * helper watches stays open, unused, for as long as the server lives. */
static int helper_mount(const char *helper, const char *dir, const char *options)
{
	int pair[2];
	char with_auto_unmount[256];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0)
		return -1;
	snprintf(with_auto_unmount, sizeof with_auto_unmount, "%s,auto_unmount", options);
	char *argv[] = {(char *)helper, "-o", with_auto_unmount, "--", (char *)dir, NULL};
	pid_t pid = run_helper(helper, argv, pair[0]);
	close(pair[0]);
	int device = pid > 0 ? receive_fd(pair[1]) : -1;
	if (device < 0) {
		close(pair[1]);
		wait_for(pid);
	}
	return device; /* a helper that mounted waits on pair[1]; init reaps it */
}

/* The mount options, for libfuse (a direct mount) and for fusermount alike. */
void fuse_mount_options(const char *fsname, char *out, size_t cap)
{
	snprintf(out, cap, "ro,nodev,nosuid,fsname=%s,subtype=appimage", fsname[0] ? fsname : "appimage");
}

/* Mounts se (made with `options`) on m->dir: 0 on success, -1 if FUSE is unusable here (m->reason
 * says why). m->helper records how, for fuse_detach. */
int fuse_attach(struct fuse_session *se, const char *options, struct mount *m)
{
	char device[32];
	if (!fusermount_find(m->helper, sizeof m->helper)) {
		if (geteuid() != 0)
			snprintf(m->reason, sizeof m->reason, "neither fusermount3 nor fusermount is installed");
		else if (fuse_session_mount(se, m->dir) == 0)
			return 0;
		else
			snprintf(m->reason, sizeof m->reason, "mounting /dev/fuse failed");
		return -1;
	}
	int fd = helper_mount(m->helper, m->dir, options);
	if (fd < 0) {
		snprintf(m->reason, sizeof m->reason, "%.100s could not mount", m->helper);
		return -1;
	}
	snprintf(device, sizeof device, "/dev/fd/%d", fd);
	return fuse_session_mount(se, device);
}

/* Lazily unmounts what fuse_attach mounted (or a stale mount of ours at dir). */
void fuse_detach(const char *helper, const char *dir)
{
	if (!helper[0]) {
		umount2(dir, MNT_DETACH);
		return;
	}
	char *argv[] = {(char *)helper, "-u", "-q", "-z", "--", (char *)dir, NULL};
	wait_for(run_helper(helper, argv, -1));
}

/*
 * The FUSE server: a process of its own that mounts the image (fusermount.c), serves it with
 * several threads (fs.c) and unmounts when no run needs it any more.
 *
 * Its clients are connections. A private mount has one, a pipe from the runtime that started
 * it; a shared mount (shared.c) gets one from every run that connects to its socket. A client
 * that exits, or is killed, closes its end, so the server always learns when it is no longer
 * needed; once the last one is gone (and, for a shared mount, nobody came back within the linger
 * time) it unmounts, removes the mount point and exits. The server leaves the terminal's session,
 * so a Ctrl-C aimed at the application does not tear the filesystem down under it; SIGTERM,
 * SIGINT, SIGHUP and SIGQUIT sent to it end it cleanly.
 *
 * Killed outright, the server leaves the unmount to its watchdog: a process of its own session that
 * ignores every signal it can and waits on a pipe from the server. The server tells it when it
 * has cleaned up; if the pipe closes without a word, the server died, and the watchdog unmounts
 * (lazily, as the mount's owner) and removes the mount point. So no mount outlives its server.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#include "appimage.h"

enum { READY_MOUNTED = 'M', READY_BAD_IMAGE = 'I', READY_NO_FUSE = 'F' };
enum { SIGNALS, LISTENER, FIRST_CLIENT }; /* slots of struct watch's pollfd array */
#define SERVER_THREADS 4

struct watch {
	struct pollfd *fds;
	size_t count, cap;
	struct listener *listener; /* NULL for a private mount */
	int linger_ms;
};

static struct mount *served;

/* The server has nothing to say on the terminal, and must not hold open the pipes or files its
 * caller handed the runtime (a lingering server would keep a reader of the runtime's output
 * waiting), nor keep the directory it was started in busy. */
static void detach(const int *keep, size_t nkeep)
{
	int null = open("/dev/null", O_RDWR);
	for (int fd = 0; fd < 3 && null >= 0; fd++)
		dup2(null, fd);
	DIR *fds = opendir("/proc/self/fd");
	for (struct dirent *e; fds && (e = readdir(fds));) {
		int fd = atoi(e->d_name);
		int kept = fd < 3 || fd == dirfd(fds);
		for (size_t i = 0; i < nkeep; i++)
			kept |= fd == keep[i];
		if (!kept && e->d_name[0] != '.')
			close(fd);
	}
	if (fds)
		closedir(fds);
	if (chdir("/") != 0)
		_exit(1);
}

/* Unmounts and removes the mount point where it is now: a directory above it may have been
 * renamed since it was made (m->point, opened then, still leads to it). */
static void detach_and_remove(struct mount *m)
{
	char link[32];
	snprintf(link, sizeof link, "/proc/self/fd/%d", m->point);
	ssize_t len = readlink(link, m->dir, sizeof m->dir - 1);
	if (len > 0)
		m->dir[len] = '\0';
	fuse_detach(m->helper, m->dir);
	rmdir(m->dir);
}

/* Unmount, remove the mount point, dismiss the watchdog, exit: once, whichever thread comes first. */
static void __attribute__((noreturn)) finish(void)
{
	static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
	pthread_mutex_lock(&once);
	detach_and_remove(served);
	while (write(served->watchdog, "", 1) < 0 && errno == EINTR)
		;
	_exit(0);
}

/* Starts the watchdog (see above); the server keeps m->watchdog, the write end of its pipe. */
static int start_watchdog(struct mount *m)
{
	int pipefd[2];
	if (pipe2(pipefd, O_CLOEXEC) != 0)
		return -1;
	pid_t pid = fork();
	if (pid == 0) {
		sigset_t all;
		char word;
		sigfillset(&all);
		sigprocmask(SIG_BLOCK, &all, NULL);
		setsid();
		detach((int[]){pipefd[0], m->point}, 2);
		ssize_t got;
		while ((got = read(pipefd[0], &word, 1)) < 0 && errno == EINTR)
			;
		if (got == 0)
			detach_and_remove(m);
		_exit(0);
	}
	close(pipefd[0]);
	m->watchdog = pipefd[1];
	return pid > 0 ? 0 : -1;
}

static void *serve_requests(void *session)
{
	struct fuse_loop_config config = {.clone_fd = 0, .max_idle_threads = SERVER_THREADS};
	fuse_session_loop_mt(session, &config);
	finish(); /* unmounted from outside, or the connection was aborted */
	return NULL;
}

static void tell(int fd, char what, const char *reason)
{
	char message[1 + sizeof served->reason];
	int len = snprintf(message, sizeof message, "%c%s", what, reason);
	while (write(fd, message, (size_t)len) < 0 && errno == EINTR)
		;
	close(fd);
}

static int add_fd(struct watch *w, int fd)
{
	if (w->count == w->cap) {
		size_t cap = w->cap ? w->cap * 2 : 16;
		struct pollfd *grown = realloc(w->fds, cap * sizeof *grown);
		if (!grown)
			return -1;
		w->fds = grown;
		w->cap = cap;
	}
	w->fds[w->count++] = (struct pollfd){.fd = fd, .events = POLLIN};
	return 0;
}

/* A client's end closed (it never writes): forget it. */
static void drop_closed_clients(struct watch *w)
{
	for (size_t i = FIRST_CLIENT; i < w->count;) {
		char byte;
		if (w->fds[i].revents && read(w->fds[i].fd, &byte, 1) <= 0) {
			close(w->fds[i].fd);
			w->fds[i] = w->fds[--w->count];
		} else {
			i++;
		}
	}
}

static void accept_clients(struct watch *w)
{
	int fd;
	while ((fd = shared_accept(w->listener, served->dir)) >= 0)
		if (add_fd(w, fd) != 0)
			close(fd);
}

/* Returns when the server should go: a signal, or no client for the linger time. */
static void watch_clients(struct watch *w)
{
	for (;;) {
		int idle = w->count == FIRST_CLIENT;
		int ready = poll(w->fds, w->count, idle ? w->linger_ms : -1);
		if (ready == 0 || (ready < 0 && errno != EINTR))
			return;
		if (ready < 0)
			continue;
		if (w->fds[SIGNALS].revents)
			return;
		if (w->fds[LISTENER].revents)
			accept_clients(w);
		drop_closed_clients(w);
	}
}

static int signal_fd(void)
{
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGQUIT);
	sigprocmask(SIG_BLOCK, &set, NULL); /* before any thread exists, so all of them block it */
	signal(SIGPIPE, SIG_IGN);
	return signalfd(-1, &set, SFD_CLOEXEC);
}

/*
 * The server process: mounts img at m->dir and tells `ready` how that went, then serves until
 * the clients are gone. `client` is the first client's connection (-1 for none), `listener` the
 * shared mount's socket (NULL for a private mount). Never returns.
 */
void serve(const struct image *img, struct mount *m, int ready, int client,
	   struct listener *listener, int linger_ms)
{
	char options[128];
	pthread_t thread;
	struct watch w = {.listener = listener, .linger_ms = linger_ms};
	int keep[] = {ready, client, listener ? listener->fd : -1, listener ? listener->dir_fd : -1};
	served = m;
	setsid();
	detach(keep, sizeof keep / sizeof keep[0]);
	m->point = open(m->dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (add_fd(&w, signal_fd()) != 0 || add_fd(&w, listener ? listener->fd : -1) != 0 ||
	    (client >= 0 && add_fd(&w, client) != 0))
		_exit(1);
	struct server_fs *sfs = fs_open(img);
	if (!sfs) {
		tell(ready, READY_BAD_IMAGE, "");
		_exit(1);
	}
	fuse_mount_options(img->name, options, sizeof options);
	struct fuse_session *se = fs_session(sfs, options);
	if (!se)
		snprintf(m->reason, sizeof m->reason, "libfuse refused the session");
	if (!se || fuse_attach(se, options, m) != 0) {
		tell(ready, READY_NO_FUSE, m->reason);
		rmdir(m->dir);
		_exit(1);
	}
	if (start_watchdog(m) != 0 || pthread_create(&thread, NULL, serve_requests, se) != 0)
		finish();
	tell(ready, READY_MOUNTED, "");
	watch_clients(&w);
	if (listener)
		shared_stop_listening(listener);
	finish();
}

/* What the server said: its status byte, and m->reason when FUSE is unusable. */
int server_ready(int fd, struct mount *m, const struct image *img)
{
	char message[1 + sizeof m->reason] = {0};
	size_t got = 0;
	ssize_t n;
	while (got < sizeof message - 1 &&
	       ((n = read(fd, message + got, sizeof message - 1 - got)) > 0 || (n < 0 && errno == EINTR)))
		got += n > 0 ? (size_t)n : 0;
	close(fd);
	if (message[0] == READY_MOUNTED)
		return 0;
	if (message[0] == READY_BAD_IMAGE) {
		report("squashfs image in %s is corrupt: it cannot be opened for mounting", img->path);
		return -1;
	}
	snprintf(m->reason, sizeof m->reason, "%s", message[0] ? message + 1 : "the FUSE server died");
	return 1;
}

/* /dev/fuse must be the FUSE device (misc 10:229), and usable: fusermount opens it as the user. */
int fuse_device_missing(struct mount *m)
{
	struct stat st;
	errno = 0;
	if (stat("/dev/fuse", &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(10, 229) &&
	    access("/dev/fuse", R_OK | W_OK) == 0)
		return 0;
	snprintf(m->reason, sizeof m->reason, "/dev/fuse: %s",
		 errno ? strerror(errno) : "not the FUSE device");
	return 1;
}

/* A private mount at $TMPDIR/.mount_<name>XXXXXX, gone when mount_stop returns.
 * Returns 0 when mounted, 1 when FUSE is unavailable (m->reason says why), -1 on error. */
int mount_start(const struct image *img, struct mount *m)
{
	int ready[2], conn[2];
	if (path_printf(m->dir, sizeof m->dir, "%s/.mount_%sXXXXXX", temp_dir(), img->name) != 0)
		return -1;
	if (fuse_device_missing(m))
		return 1;
	if (!mkdtemp(m->dir) || pipe2(ready, O_CLOEXEC) != 0 || pipe2(conn, O_CLOEXEC) != 0) {
		report("cannot create mount point %s: %s", m->dir, strerror(errno));
		return -1;
	}
	m->server = fork();
	if (m->server == 0) {
		close(ready[0]);
		close(conn[1]);
		serve(img, m, ready[1], conn[0], NULL, 0);
	}
	close(ready[1]);
	close(conn[0]);
	m->conn = conn[1];
	if (m->server < 0) {
		report("cannot start the FUSE server: %s", strerror(errno));
		close(m->conn);
		close(ready[0]);
		rmdir(m->dir);
		return -1;
	}
	int status = server_ready(ready[0], m, img);
	if (status != 0)
		mount_stop(m);
	return status;
}

/* Lets the server go. A private mount's server unmounts and exits at once: wait for it, usually
 * 2-3 ms (every run pays this on its way out), at most 10 s, then kill it and detach the mount
 * here. A shared mount's server lingers: nothing to wait for. */
void mount_stop(struct mount *m)
{
	close(m->conn);
	if (m->server <= 0)
		return;
	for (int tick = 0; tick < 10000; tick++) {
		if (waitpid(m->server, NULL, WNOHANG) == m->server) {
			rmdir(m->dir);
			return;
		}
		usleep(1000);
	}
	kill(m->server, SIGKILL);
	waitpid(m->server, NULL, 0);
	fusermount_find(m->helper, sizeof m->helper);
	fuse_detach(m->helper, m->dir);
	rmdir(m->dir);
}

/*
 * Running AppRun as a child process, so the runtime can clean up (unmount, delete an extraction)
 * after it and still exit exactly like it did: same exit code, or the same fatal signal.
 *
 * Signals: a terminal's Ctrl-C already reaches AppRun (same process group), so only signals sent
 * explicitly to the runtime (kill, systemd, a CI timeout) are forwarded to AppRun.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "appimage.h"

static const int forwarded[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
#define NFORWARDED (sizeof forwarded / sizeof forwarded[0])

static volatile pid_t child;
static volatile sig_atomic_t received;

static void on_signal(int sig, siginfo_t *info, void *context)
{
	(void)context;
	received = sig;
	if (child > 0 && info->si_code <= 0) /* SI_USER, SI_QUEUE, SI_TKILL: sent by a process */
		kill(child, sig);
}

static void handle_signals(sigset_t *blocked)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_signal;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(blocked);
	for (size_t i = 0; i < NFORWARDED; i++) {
		sigaction(forwarded[i], &sa, NULL);
		sigaddset(blocked, forwarded[i]);
	}
}

/* Signals only set a flag from here on (work in progress polls signal_received() to stop early). */
void catch_signals(void)
{
	sigset_t unused;
	handle_signals(&unused);
}

int signal_received(void)
{
	return received;
}

static void set_environment(const struct image *img, const char *appdir, const char *argv0)
{
	char cwd[PATH_MAX];
	setenv("APPDIR", appdir, 1);
	setenv("APPIMAGE", img->path, 1);
	setenv("ARGV0", argv0, 1);
	if (getcwd(cwd, sizeof cwd))
		setenv("OWD", cwd, 1);
	portable_dirs_apply(img);
}

static void exec_apprun(const char *appdir, int argc, char **argv)
{
	char apprun[PATH_MAX];
	char **args = calloc((size_t)argc + 2, sizeof *args);
	if (!args || path_printf(apprun, sizeof apprun, "%s/AppRun", appdir) != 0)
		_exit(127);
	for (size_t i = 0; i < NFORWARDED; i++)
		signal(forwarded[i], SIG_DFL);
	sigset_t none;
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL);
	args[0] = apprun; /* AppRun scripts find their directory through $0 */
	memcpy(args + 1, argv, (size_t)argc * sizeof *args);
	execv(apprun, args);
	report("cannot run %s: %s", apprun, strerror(errno));
	_exit(127);
}

/* Runs appdir/AppRun with the given arguments; returns its wait status. */
int run_apprun(const struct image *img, const char *appdir, char *argv0, int argc, char **argv)
{
	sigset_t blocked;
	int status = 0;
	set_environment(img, appdir, argv0);
	handle_signals(&blocked);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	pid_t pid = fork();
	if (pid == 0)
		exec_apprun(appdir, argc, argv);
	child = pid;
	sigprocmask(SIG_UNBLOCK, &blocked, NULL);
	if (pid < 0) {
		report("cannot start AppRun: %s", strerror(errno));
		return 127 << 8;
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	child = 0;
	return status;
}

/* Prints announcement, then blocks until SIGINT, SIGTERM, SIGHUP or SIGQUIT (--appimage-mount).
 * The handlers are in place before the announcement, so whoever reads it may signal at once. */
int wait_for_signal(const char *announcement)
{
	sigset_t blocked, old;
	handle_signals(&blocked);
	sigprocmask(SIG_BLOCK, &blocked, &old);
	printf("%s\n", announcement);
	fflush(stdout);
	while (!received)
		sigsuspend(&old);
	sigprocmask(SIG_SETMASK, &old, NULL);
	return received;
}

/* Ends this process the way AppRun ended: its exit code, or re-raising its fatal signal. */
void exit_like(int status)
{
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		sigset_t only;
		signal(sig, SIG_DFL);
		sigemptyset(&only);
		sigaddset(&only, sig);
		sigprocmask(SIG_UNBLOCK, &only, NULL);
		raise(sig);
		_exit(128 + sig);
	}
	exit(WIFEXITED(status) ? WEXITSTATUS(status) : 1);
}

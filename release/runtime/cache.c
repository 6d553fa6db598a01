/*
 * Extract-and-run: for systems without FUSE (containers, CI) and on request.
 *
 * Everything lives in a per-user private directory, ${XDG_CACHE_HOME:-~/.cache}/appimage (see
 * private_dir.c: disk-backed, since a model-sized tree does not belong in a RAM-backed runtime
 * dir). The shared tree extracted_<sha256 of the squashfs> is only ever published complete, by an
 * atomic rename, and only by runs with NO_CLEANUP set, which keep it for later runs to reuse; it is
 * reused only while it is still a directory of ours that nobody else can write, and only under a
 * digest checked against the content of the image being run (identity.c: once per file). Other
 * runs extract into a private directory next to it that they delete afterwards, so concurrent runs
 * never delete a tree another run is using; a run killed outright leaves its tree behind, and the
 * next run reclaims it (reclaim). A signal during the extraction deletes the partial tree before
 * the runtime dies of it. Without an embedded sha256 or a usable home, nothing is shared: a
 * private tree in $TMPDIR, deleted after the run.
 */
#define _XOPEN_SOURCE 700
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appimage.h"

static int make_writable(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_D || type == FTW_DNR)
		chmod(path, (st->st_mode & 07777) | 0700);
	return 0;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)st, (void)type, (void)ftw;
	remove(path);
	return 0;
}

/* rm -rf that follows no symlink and gets into read-only directories (the tree is ours). */
void remove_tree(const char *dir)
{
	nftw(dir, make_writable, 16, FTW_PHYS);
	nftw(dir, remove_entry, 16, FTW_PHYS | FTW_DEPTH);
}

/* Where this image's extracted trees live, with a lock: base (the per-user private cache directory)
 * opened, and the shared tree's name there ("" when none can be shared: no embedded digest). */
struct cache {
	char base[PATH_MAX - 96];
	int fd;   /* base, opened; -1 when there is none: a private tree in $TMPDIR */
	int lock; /* base/.lock: shared while a run creates and locks its tree, exclusive to reclaim */
	char digest[65];
	char shared[PATH_MAX - 16];
};

static int cache_open(const struct image *img, struct cache *c)
{
	c->fd = c->lock = -1;
	c->shared[0] = '\0';
	if (user_private_base(c->base, sizeof c->base) != 0)
		return 0; /* no home: $TMPDIR */
	c->fd = open(c->base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (c->fd >= 0)
		c->lock = openat(c->fd, ".lock", O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (c->lock < 0)
		return 0;
	if (image_digest(img, c->digest))
		return path_printf(c->shared, sizeof c->shared, "%s/extracted_%s", c->base, c->digest);
	return 0;
}

static void lock(int fd, int how)
{
	while (flock(fd, how) != 0 && errno == EINTR)
		;
}

/* A run's own tree while it is being extracted or run: extracted_<digest>.XXXXXX (mkdtemp). */
static int partial_name(const char *name)
{
	size_t n = strlen(name);
	return strncmp(name, "extracted_", 10) == 0 && n == 10 + 64 + 7 && name[10 + 64] == '.';
}

/*
 * Deletes the trees of runs that died without cleaning up (SIGKILL, the OOM killer, a power
 * cut): each run holds an exclusive flock on its tree from its creation to its end (made and
 * locked under the shared base lock), so a tree nobody holds, seen under the exclusive base
 * lock, is a dead run's.
 */
static void reclaim(struct cache *c)
{
	char path[PATH_MAX];
	int fds[64], count = 0;
	char names[64][96];
	lock(c->lock, LOCK_EX);
	DIR *entries = fdopendir(dup(c->fd));
	for (struct dirent *e; entries && count < 64 && (e = readdir(entries));) {
		if (!partial_name(e->d_name))
			continue;
		int fd = openat(c->fd, e->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0) {
			snprintf(names[count], sizeof names[count], "%s", e->d_name);
			fds[count++] = fd;
		} else if (fd >= 0) {
			close(fd);
		}
	}
	if (entries)
		closedir(entries);
	lock(c->lock, LOCK_UN);
	for (int i = 0; i < count; i++) {
		if (path_printf(path, sizeof path, "%s/%s", c->base, names[i]) == 0)
			remove_tree(path);
		close(fds[i]);
	}
}

/* Extracts into a fresh private directory (next to the shared tree, else in $TMPDIR) into out;
 * *held is its locked fd (-1 in $TMPDIR), kept for the run's life. */
static int extract_private(const struct image *img, struct cache *c, char *out, int *held)
{
	*held = -1;
	if (c->shared[0] ? path_printf(out, PATH_MAX, "%s.XXXXXX", c->shared)
			 : path_printf(out, PATH_MAX, "%s/appimage_extracted_XXXXXX", temp_dir()))
		return -1;
	if (c->shared[0])
		lock(c->lock, LOCK_SH);
	if (!mkdtemp(out)) {
		report("cannot create %s: %s", out, strerror(errno));
		return -1; /* the lock goes with the process */
	}
	if (c->shared[0]) {
		*held = open(out, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (*held >= 0)
			lock(*held, LOCK_EX);
		lock(c->lock, LOCK_UN);
	}
	catch_signals();
	if (extract_tree(img, out, NULL) == 0)
		return 0;
	remove_tree(out);
	if (signal_received()) {
		signal(signal_received(), SIG_DFL);
		raise(signal_received());
	}
	return -1;
}

/* Whether the shared tree may be used (reused, or published by NO_CLEANUP): only under a digest
 * checked against this image's content (identity.c). */
static int may_share(const struct image *img, struct cache *c)
{
	return c->shared[0] && (getenv("NO_CLEANUP") || access(c->shared, F_OK) == 0) &&
	       image_digest_verified(img, c->fd, c->digest);
}

int extract_and_run(const struct image *img, char *argv0, int argc, char **argv)
{
	struct cache c;
	char dir[PATH_MAX];
	int held = -1;
	if (cache_open(img, &c) != 0)
		return 1;
	if (c.fd >= 0 && c.lock >= 0)
		reclaim(&c);
	int share = may_share(img, &c);
	int reuse = share && private_dir_ok(c.shared);
	if (reuse)
		snprintf(dir, sizeof dir, "%s", c.shared);
	else if (extract_private(img, &c, dir, &held) != 0)
		return 1;
	else if (share && getenv("NO_CLEANUP") && rename(dir, c.shared) == 0)
		reuse = 1, snprintf(dir, sizeof dir, "%s", c.shared);
	int status = run_apprun(img, dir, argv0, argc, argv);
	if (!reuse)
		remove_tree(dir);
	exit_like(status);
}

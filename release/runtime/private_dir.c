/*
 * Directories only this user controls: where a runtime may keep things that it later trusts and
 * runs (the extract-and-run cache; a shared mount point). Anything another user could have created,
 * replaced or written into is refused. A directory qualifies when lstat says it is a real directory
 * (not a symlink), owned by our effective uid, not writable by group or others, and its parent is
 * owned by us or root and not writable by group or others either (or the entry could be swapped).
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appimage.h"

static int owned_and_closed(const struct stat *st, int root_may_own)
{
	uid_t me = geteuid();
	return S_ISDIR(st->st_mode) && (st->st_uid == me || (root_may_own && st->st_uid == 0)) &&
	       (st->st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

/* 1 when path is a directory only this user controls (see above), else 0. */
int private_dir_ok(const char *path)
{
	char parent[PATH_MAX];
	struct stat st;
	if (lstat(path, &st) != 0 || !owned_and_closed(&st, 0))
		return 0;
	if (path_printf(parent, sizeof parent, "%s", path) != 0)
		return 0;
	char *slash = strrchr(parent, '/');
	if (!slash)
		return 0;
	*(slash == parent ? slash + 1 : slash) = '\0';
	return lstat(parent, &st) == 0 && owned_and_closed(&st, 1);
}

/* Creates path (mode 0700) unless it exists; 0 when it then is private, else -1 (reported). */
int private_dir_make(const char *path)
{
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		report("cannot create %s: %s", path, strerror(errno));
		return -1;
	}
	if (private_dir_ok(path))
		return 0;
	report("%s is not a private directory of this user (a symlink, another owner, or writable by "
	       "others): not using it", path);
	return -1;
}

/* ${XDG_CACHE_HOME:-$HOME/.cache}/appimage, created private; -1 when there is no home (silently)
 * or it cannot be made private (reported). */
int user_private_base(char *out, size_t cap)
{
	const char *cache = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
	char parent[PATH_MAX];
	if (cache && cache[0] == '/') {
		if (path_printf(parent, sizeof parent, "%s", cache) != 0)
			return -1;
	} else if (home && home[0] == '/') {
		if (path_printf(parent, sizeof parent, "%s/.cache", home) != 0)
			return -1;
	} else {
		return -1; /* no home (a chroot, a service): the caller falls back to $TMPDIR */
	}
	if (path_printf(out, cap, "%s/appimage", parent) != 0)
		return -1;
	mkdir(parent, 0700); /* a fresh home has no cache directory yet */
	return private_dir_make(out);
}

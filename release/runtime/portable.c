/*
 * Portable home and config directories, as type2-runtime has them: a directory next to the
 * AppImage named <file>.home or <file>.config becomes the application's $HOME or
 * $XDG_CONFIG_HOME, so settings travel with the file (a USB stick, a project folder).
 * `--appimage-portable-home` / `--appimage-portable-config` create them. Unlike type2-runtime, a
 * directory is used only while it is the invoking user's own, writable by nobody else, in a
 * directory where nobody else can swap it: another local user's `<file>.config` next to an
 * AppImage in a shared folder would otherwise hand them the victim's settings and init files.
 */
#include <errno.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appimage.h"

static const struct {
	const char *suffix, *variable;
} portable[] = {{"home", "HOME"}, {"config", "XDG_CONFIG_HOME"}};
#define NPORTABLE (sizeof portable / sizeof portable[0])

static void portable_path(const struct image *img, const char *suffix, char *out, size_t cap)
{
	snprintf(out, cap, "%s.%s", img->path, suffix);
}

/* Creates <file>.<suffix> (suffix "home" or "config"); prints where, or why not. */
int portable_dir_create(const struct image *img, const char *suffix)
{
	char dir[PATH_MAX + 16];
	portable_path(img, suffix, dir, sizeof dir);
	if (mkdir(dir, 0700) != 0) {
		report("cannot create the portable %s directory %s: %s", suffix, dir, strerror(errno));
		return 1;
	}
	fprintf(stderr, "Portable %s directory created at %s\n", suffix, dir);
	return 0;
}

/* Why dir, which exists, must not become the application's $HOME or $XDG_CONFIG_HOME, or NULL.
 * Anybody who can write to a directory the application is told to take its settings from can
 * run code as the user (a shell's or SWI-Prolog's init file), so it must be a real directory of
 * the invoking user that nobody else can write, in a directory where nobody else can swap it. */
static const char *portable_problem(const char *dir, const struct stat *st, char *why, size_t cap)
{
	char parent[PATH_MAX + 16];
	struct stat up;
	if (st->st_uid != getuid())
		snprintf(why, cap, "it belongs to uid %u, not to this user", (unsigned)st->st_uid);
	else if (st->st_mode & (S_IWGRP | S_IWOTH))
		snprintf(why, cap, "others can write to it (mode %03o)", (unsigned)(st->st_mode & 0777));
	else if (snprintf(parent, sizeof parent, "%s", dir) < 0 || stat(dirname(parent), &up) != 0 ||
		 ((up.st_mode & (S_IWGRP | S_IWOTH)) && !(up.st_mode & S_ISVTX)))
		snprintf(why, cap, "others could replace it (%s is writable by others and not sticky)", parent);
	else
		return NULL;
	return why;
}

/* Points HOME / XDG_CONFIG_HOME at the portable directories that exist, are this user's own and
 * writable; says in one line why one that exists is not used. */
void portable_dirs_apply(const struct image *img)
{
	char dir[PATH_MAX + 16], why[PATH_MAX + 96];
	struct stat st;
	for (size_t i = 0; i < NPORTABLE; i++) {
		portable_path(img, portable[i].suffix, dir, sizeof dir);
		if (lstat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
			continue; /* none, or not a directory (a symlink is not followed) */
		if (portable_problem(dir, &st, why, sizeof why)) {
			report("not using %s as $%s: %s", dir, portable[i].variable, why);
			continue;
		}
		if (access(dir, W_OK) != 0)
			continue;
		fprintf(stderr, "Setting $%s to %s\n", portable[i].variable, dir);
		setenv(portable[i].variable, dir, 1);
	}
}

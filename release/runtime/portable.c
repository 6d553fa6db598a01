/*
 * Portable home and config directories, as type2-runtime has them: a directory next to the
 * AppImage named <file>.home or <file>.config becomes the application's $HOME or
 * $XDG_CONFIG_HOME, so settings travel with the file (a USB stick, a project folder).
 * `--appimage-portable-home` / `--appimage-portable-config` create them.
 */
#include <errno.h>
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

/* Points HOME / XDG_CONFIG_HOME at the portable directories that exist and are writable. */
void portable_dirs_apply(const struct image *img)
{
	char dir[PATH_MAX + 16];
	struct stat st;
	for (size_t i = 0; i < NPORTABLE; i++) {
		portable_path(img, portable[i].suffix, dir, sizeof dir);
		if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode) || access(dir, W_OK) != 0)
			continue;
		fprintf(stderr, "Setting $%s to %s\n", portable[i].variable, dir);
		setenv(portable[i].variable, dir, 1);
	}
}

/*
 * Extract-and-run: for systems without FUSE (containers, CI) and on request.
 *
 * The shared directory $TMPDIR/appimage_extracted_<key> (key: image_cache_key) is only ever
 * published complete, by an atomic rename, and only by runs with NO_CLEANUP set, which keep it
 * for later runs to reuse. Other runs reuse it if present, else extract into a private directory
 * that they delete afterwards, so concurrent runs never delete a tree another run is using.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static void remove_tree(const char *dir)
{
	nftw(dir, make_writable, 16, FTW_PHYS);
	nftw(dir, remove_entry, 16, FTW_PHYS | FTW_DEPTH);
}

static int is_dir(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Extracts into a fresh private directory next to shared; publishes it there when keep is set. */
static int extract_private(const struct image *img, const char *shared, int keep, char *out)
{
	snprintf(out, PATH_MAX, "%s.XXXXXX", shared);
	if (!mkdtemp(out)) {
		report("cannot create %s: %s", out, strerror(errno));
		return -1;
	}
	if (extract_tree(img, out, NULL) != 0) {
		remove_tree(out);
		return -1;
	}
	if (keep && rename(out, shared) == 0)
		snprintf(out, PATH_MAX, "%s", shared);
	return 0;
}

int extract_and_run(const struct image *img, char *argv0, int argc, char **argv)
{
	int keep = getenv("NO_CLEANUP") != NULL;
	char shared[PATH_MAX - 16], dir[PATH_MAX];
	snprintf(shared, sizeof shared, "%s/appimage_extracted_%016llx", temp_dir(),
		 (unsigned long long)image_cache_key(img));
	if (is_dir(shared))
		snprintf(dir, sizeof dir, "%s", shared);
	else if (extract_private(img, shared, keep, dir) != 0)
		return 1;
	int status = run_apprun(img, dir, argv0, argc, argv);
	if (strcmp(dir, shared) != 0 && !keep)
		remove_tree(dir);
	exit_like(status);
}

/*
 * Extract-and-run: for systems without FUSE (containers, CI) and on request.
 *
 * Everything lives in a per-user private directory, ${XDG_CACHE_HOME:-~/.cache}/appimage (see
 * private_dir.c: disk-backed, since a model-sized tree does not belong in a RAM-backed runtime
 * dir). The shared tree extracted_<sha256 of the squashfs> is only ever published complete, by an
 * atomic rename, and only by runs with NO_CLEANUP set, which keep it for later runs to reuse; it is
 * reused only while it is still a directory of ours that nobody else can write. Other runs extract
 * into a private directory that they delete afterwards, so concurrent runs never delete a tree
 * another run is using. A signal during the extraction deletes the partial tree before the runtime
 * dies of it. Without an embedded sha256 or a usable home, nothing is shared: a private tree in
 * $TMPDIR, deleted after the run.
 */
#define _XOPEN_SOURCE 700
#include <errno.h>
#include <ftw.h>
#include <signal.h>
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

/* rm -rf that follows no symlink and gets into read-only directories (the tree is ours). */
void remove_tree(const char *dir)
{
	nftw(dir, make_writable, 16, FTW_PHYS);
	nftw(dir, remove_entry, 16, FTW_PHYS | FTW_DEPTH);
}

/* Where the shared tree for this image would be; 0 with shared[0] == '\0' when none can be. */
static int shared_tree_path(char *shared, size_t cap)
{
	char base[PATH_MAX - 96], key[65];
	shared[0] = '\0';
	if (!image_content_id(key, sizeof key) || user_private_base(base, sizeof base) != 0)
		return 0;
	return path_printf(shared, cap, "%s/extracted_%s", base, key);
}

/* Extracts into a fresh private directory (next to shared, else in $TMPDIR) into out. */
static int extract_private(const struct image *img, const char *shared, char *out)
{
	if (shared[0] ? path_printf(out, PATH_MAX, "%s.XXXXXX", shared)
		      : path_printf(out, PATH_MAX, "%s/appimage_extracted_XXXXXX", temp_dir()))
		return -1;
	if (!mkdtemp(out)) {
		report("cannot create %s: %s", out, strerror(errno));
		return -1;
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

int extract_and_run(const struct image *img, char *argv0, int argc, char **argv)
{
	char shared[PATH_MAX - 16], dir[PATH_MAX];
	if (shared_tree_path(shared, sizeof shared) != 0)
		return 1;
	int reuse = shared[0] && private_dir_ok(shared);
	if (reuse)
		snprintf(dir, sizeof dir, "%s", shared);
	else if (extract_private(img, shared, dir) != 0)
		return 1;
	else if (shared[0] && getenv("NO_CLEANUP") && rename(dir, shared) == 0)
		reuse = 1, snprintf(dir, sizeof dir, "%s", shared);
	int status = run_apprun(img, dir, argv0, argc, argv);
	if (!reuse)
		remove_tree(dir);
	exit_like(status);
}

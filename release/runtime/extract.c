/*
 * Extracting the squashfs with squashfuse's own reader (sqfs_traverse / sqfs_read_range), so no
 * FUSE and no unsquashfs is needed on the target. Keeps symlinks and permission bits, streams
 * files in 1 MiB chunks with 64-bit offsets (the bundled model is several GB), and sets directory
 * modes last so read-only directories can still be filled.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/squashfuse.h>

#include "appimage.h"

#define CHUNK (1 << 20)

struct dir_modes {
	char **paths;
	mode_t *modes;
	size_t count, cap;
};

static int remember_dir(struct dir_modes *dirs, const char *path, mode_t mode)
{
	if (dirs->count == dirs->cap) {
		dirs->cap = dirs->cap ? dirs->cap * 2 : 64;
		dirs->paths = realloc(dirs->paths, dirs->cap * sizeof *dirs->paths);
		dirs->modes = realloc(dirs->modes, dirs->cap * sizeof *dirs->modes);
		if (!dirs->paths || !dirs->modes)
			return -1;
	}
	dirs->paths[dirs->count] = strdup(path);
	dirs->modes[dirs->count++] = mode;
	return 0;
}

static void apply_dir_modes(struct dir_modes *dirs)
{
	while (dirs->count > 0) {
		dirs->count--;
		chmod(dirs->paths[dirs->count], dirs->modes[dirs->count]);
		free(dirs->paths[dirs->count]);
	}
	free(dirs->paths);
	free(dirs->modes);
}

/* mkdir -p of the parents of path (a pattern may select entries deep in the tree). */
static void make_parents(char *path)
{
	for (char *slash = strchr(path + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		mkdir(path, 0755);
		*slash = '/';
	}
}

static int write_all(int fd, const char *buf, size_t size)
{
	while (size > 0) {
		ssize_t done = write(fd, buf, size);
		if (done < 0 && errno == EINTR)
			continue;
		if (done <= 0)
			return -1;
		buf += done;
		size -= (size_t)done;
	}
	return 0;
}

static int extract_file(sqfs *fs, sqfs_inode *inode, const char *out, char *buf)
{
	unlink(out);
	int fd = open(out, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0)
		return -1;
	uint64_t size = inode->xtra.reg.file_size;
	for (uint64_t pos = 0; pos < size;) {
		sqfs_off_t n = size - pos < CHUNK ? (sqfs_off_t)(size - pos) : CHUNK;
		if (sqfs_read_range(fs, inode, (sqfs_off_t)pos, &n, buf) != SQFS_OK || n <= 0 ||
		    write_all(fd, buf, (size_t)n) != 0) {
			close(fd);
			return -1;
		}
		pos += (uint64_t)n;
	}
	int status = fchmod(fd, inode->base.mode & 07777);
	return close(fd) == 0 ? status : -1;
}

static int extract_symlink(sqfs *fs, sqfs_inode *inode, const char *out)
{
	size_t size = inode->xtra.symlink_size + 1;
	char *target = malloc(size);
	int status = -1;
	if (target && sqfs_readlink(fs, inode, target, &size) == SQFS_OK) {
		unlink(out);
		status = symlink(target, out);
	}
	free(target);
	return status;
}

static int extract_entry(sqfs *fs, sqfs_inode *inode, const char *out, char *buf,
			 struct dir_modes *dirs)
{
	mode_t mode = inode->base.mode;
	if (S_ISDIR(mode)) {
		if (mkdir(out, 0700) != 0 && errno != EEXIST)
			return -1;
		return remember_dir(dirs, out, mode & 07777);
	}
	if (S_ISREG(mode))
		return extract_file(fs, inode, out, buf);
	if (S_ISLNK(mode))
		return extract_symlink(fs, inode, out);
	return 0; /* devices, fifos and sockets have no place in an AppDir */
}

static int extract_all(sqfs *fs, const char *dest, const char *pattern, char *buf,
		       struct dir_modes *dirs)
{
	sqfs_traverse trv;
	sqfs_inode inode;
	sqfs_err err = sqfs_traverse_open(&trv, fs, sqfs_inode_root(fs));
	char out[PATH_MAX];
	while (err == SQFS_OK && sqfs_traverse_next(&trv, &err)) {
		if (trv.dir_end || !extract_pattern_matches(pattern, trv.path))
			continue;
		snprintf(out, sizeof out, "%s/%s", dest, trv.path);
		if (pattern)
			make_parents(out);
		if (sqfs_inode_get(fs, &inode, trv.entry.inode) != SQFS_OK) {
			err = SQFS_ERR;
		} else if (extract_entry(fs, &inode, out, buf, dirs) != 0) {
			report("cannot extract %s: %s", out, errno ? strerror(errno) : "corrupt data");
			sqfs_traverse_close(&trv);
			return -1;
		}
	}
	sqfs_traverse_close(&trv);
	if (err != SQFS_OK)
		report("squashfs image is corrupt: cannot read its directory tree");
	return err == SQFS_OK ? 0 : -1;
}

/* Extracts the image (or the entries matching pattern) into dest; prints why and returns -1 on failure. */
int extract_tree(const struct image *img, const char *dest, const char *pattern)
{
	sqfs fs;
	struct dir_modes dirs = {0};
	int fd;
	char *buf = malloc(CHUNK);
	if (!buf || image_fs_init(img, &fs, &fd) != SQFS_OK) {
		report("cannot read the squashfs image in %s", img->path);
		return -1;
	}
	if (mkdir(dest, 0755) != 0 && errno != EEXIST) {
		report("cannot create %s: %s", dest, strerror(errno));
		return -1;
	}
	errno = 0;
	int status = extract_all(&fs, dest, pattern, buf, &dirs);
	apply_dir_modes(&dirs);
	sqfs_destroy(&fs);
	close(fd);
	free(buf);
	return status;
}

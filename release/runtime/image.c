/*
 * The running AppImage itself: its absolute path, where its squashfs starts, an up-front
 * validation of that squashfs so a corrupt or truncated file fails with one clear line before
 * anything is mounted or extracted (rather than as a hang, a crash or an obscure I/O error later).
 */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/squashfuse.h>

#include "appimage.h"

static void safe_name(const char *path, char *out, size_t cap)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t n = 0;
	for (; *base && n + 1 < cap && n < 16; base++)
		if (isalnum((unsigned char)*base) || strchr("._-", *base))
			out[n++] = *base;
	out[n] = '\0';
}

/* Fills img from source (/proc/self/exe, or TARGET_APPIMAGE); prints the reason and returns -1 on failure. */
int image_open(struct image *img, const char *source)
{
	struct stat st;
	if (!realpath(source, img->path)) {
		report("cannot resolve %s: %s", source, strerror(errno));
		return -1;
	}
	int fd = open(img->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0) {
		report("cannot open %s: %s", img->path, strerror(errno));
		return -1;
	}
	img->offset = elf_end_offset(fd);
	img->size = st.st_size;
	close(fd);
	safe_name(img->path, img->name, sizeof img->name);
	if (img->offset <= 0 || img->offset >= img->size) {
		report("%s has no squashfs image after its ELF part (not an AppImage?)", img->path);
		return -1;
	}
	return 0;
}

/* The library's view of the embedded squashfs; the caller closes *fd (-1 if open failed). */
int image_fs_init(const struct image *img, sqfs *fs, int *fd)
{
	memset(fs, 0, sizeof *fs);
	*fd = open(img->path, O_RDONLY | O_CLOEXEC);
	return *fd < 0 ? SQFS_ERR : sqfs_init(fs, *fd, (size_t)img->offset);
}

/* What image_fs_init made, freed: sqfs_destroy forgets the xattr table. */
void image_fs_destroy(sqfs *fs)
{
	sqfs_destroy(fs);
	sqfs_table_destroy(&fs->xattr_table);
}

static const char *init_error(sqfs_err err)
{
	switch (err) {
	case SQFS_BADFORMAT: return "no squashfs magic (corrupt or not an AppImage)";
	case SQFS_BADVERSION: return "unsupported squashfs version";
	case SQFS_BADCOMP: return "compression not supported by this runtime";
	default: return "its tables cannot be read (corrupt)";
	}
}

static int bad_image(const struct image *img, const char *why)
{
	report("bad squashfs image at offset %lld in %s: %s", (long long)img->offset, img->path, why);
	return -1;
}

/* The superblock, checked by us first: squashfuse would trust its sizes and offsets. */
static int superblock_check(const struct image *img, int fd)
{
	unsigned char raw[96];
	off_t available = img->size - img->offset;
	if (pread(fd, raw, sizeof raw, img->offset) != (ssize_t)sizeof raw)
		return bad_image(img, "too short for a squashfs superblock");
	const char *problem = superblock_problem(raw, (uint64_t)available);
	if (problem)
		return bad_image(img, problem);
	uint64_t used = 0;
	for (int i = 7; i >= 0; i--)
		used = (used << 8) | raw[40 + i];
	if (used <= (uint64_t)available)
		return 0;
	report("squashfs image in %s is truncated: needs %llu bytes after offset %lld, has %lld",
	       img->path, (unsigned long long)used, (long long)img->offset, (long long)available);
	return -1;
}

/* Checks the superblock, then opens the squashfs with the library and reads its root directory. */
int image_check(const struct image *img)
{
	sqfs fs;
	sqfs_inode root;
	int fd = open(img->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		report("cannot open %s: %s", img->path, strerror(errno));
		return -1;
	}
	int status = superblock_check(img, fd);
	close(fd);
	if (status != 0)
		return -1;
	sqfs_err err = image_fs_init(img, &fs, &fd);
	if (err != SQFS_OK)
		status = bad_image(img, init_error(err));
	else if (!guard_tables(&fs))
		status = bad_image(img, "its fragment, uid/gid or export table is shorter than it claims");
	else if (!guard_inode_ref(&fs, sqfs_inode_root(&fs)) ||
		 sqfs_inode_get(&fs, &root, sqfs_inode_root(&fs)) != SQFS_OK || !S_ISDIR(root.base.mode)) {
		report("squashfs image in %s is corrupt: its root directory cannot be read", img->path);
		status = -1;
	}
	if (err == SQFS_OK)
		image_fs_destroy(&fs);
	if (fd >= 0)
		close(fd);
	return status;
}

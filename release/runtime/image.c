/*
 * The running AppImage itself: its absolute path, where its squashfs starts, and an up-front
 * validation of that squashfs so a corrupt or truncated file fails with one clear line before
 * anything is mounted or extracted (rather than as a hang or an obscure I/O error later).
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

static const char *init_error(sqfs_err err)
{
	switch (err) {
	case SQFS_BADFORMAT: return "no squashfs magic (corrupt or not an AppImage)";
	case SQFS_BADVERSION: return "unsupported squashfs version";
	case SQFS_BADCOMP: return "compression not supported by this runtime";
	default: return "its tables cannot be read (corrupt)";
	}
}

/* A superblock that claims more bytes than the file holds: a partial download or copy. */
static int truncated(const struct image *img, const sqfs *fs)
{
	if (fs->sb.s_magic != SQUASHFS_MAGIC || (off_t)fs->sb.bytes_used <= img->size - img->offset)
		return 0;
	report("squashfs image in %s is truncated: needs %llu bytes after offset %lld, has %lld",
	       img->path, (unsigned long long)fs->sb.bytes_used, (long long)img->offset,
	       (long long)(img->size - img->offset));
	return 1;
}

/* Opens the squashfs with the library and checks its recorded size against the file. */
int image_check(const struct image *img)
{
	sqfs fs;
	sqfs_inode root;
	int fd;
	sqfs_err err = image_fs_init(img, &fs, &fd);
	if (fd < 0) {
		report("cannot open %s: %s", img->path, strerror(errno));
		return -1;
	}
	int status = truncated(img, &fs) ? -1 : 0;
	if (status == 0 && err != SQFS_OK) {
		report("bad squashfs image at offset %lld in %s: %s", (long long)img->offset,
		       img->path, init_error(err));
		status = -1;
	} else if (status == 0 && sqfs_inode_get(&fs, &root, sqfs_inode_root(&fs)) != SQFS_OK) {
		report("squashfs image in %s is corrupt: its root directory cannot be read", img->path);
		status = -1;
	}
	if (err == SQFS_OK)
		sqfs_destroy(&fs);
	close(fd);
	return status;
}

static uint64_t fnv1a(uint64_t hash, const void *data, size_t size)
{
	const unsigned char *p = data;
	for (size_t i = 0; i < size; i++)
		hash = (hash ^ p[i]) * 0x100000001b3ULL;
	return hash;
}

/*
 * A key for the extract-and-run cache that changes whenever the AppImage does, without hashing
 * gigabytes on every start: file size and mtime, the squashfs superblock (its table offsets move
 * with any content change) and the last 64 KiB, where squashfs keeps its tables.
 */
uint64_t image_cache_key(const struct image *img)
{
	static unsigned char buf[65536];
	struct stat st;
	uint64_t hash = 0xcbf29ce484222325ULL;
	int fd = open(img->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) != 0)
		return hash;
	hash = fnv1a(hash, &st.st_size, sizeof st.st_size);
	hash = fnv1a(hash, &st.st_mtim, sizeof st.st_mtim);
	ssize_t got = pread(fd, buf, 96, img->offset);
	hash = fnv1a(hash, buf, got > 0 ? (size_t)got : 0);
	off_t tail = img->size - (off_t)sizeof buf;
	got = pread(fd, buf, sizeof buf, tail > img->offset ? tail : img->offset);
	hash = fnv1a(hash, buf, got > 0 ? (size_t)got : 0);
	close(fd);
	return hash;
}

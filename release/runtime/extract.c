/*
 * Extracting the squashfs with squashfuse's own reader (sqfs_dir_next / sqfs_read_range), so no
 * FUSE and no unsquashfs is needed on the target. Keeps symlinks and permission bits (minus setuid
 * and setgid), streams files in 1 MiB chunks with 64-bit offsets (the bundled model is several GB)
 * and leaves all-zero chunks as holes.
 *
 * The image is untrusted input, so nothing it says can reach outside dest:
 *   - entry names that are empty, ".", "..", longer than 256 bytes or hold a '/' stop the extraction;
 *   - the tree is built on directory fds (mkdirat, openat with O_NOFOLLOW and O_EXCL, symlinkat,
 *     fchmod), never through a path, so no symlink (from the image or already on disk) is followed;
 *     whatever already sits at an entry's name is unlinked first, so a hard link to a file elsewhere
 *     is replaced, not written through;
 *   - each directory inode is extracted once (a loop or a shared subtree is corruption), at most
 *     MAX_DEPTH levels deep, and directory modes are set once their contents are written;
 *   - each file inode is written once: its other names (hard links) become links to that first
 *     copy, so a small image of one big file with many names does not fill the disk (the link is
 *     made through directories opened with O_NOFOLLOW, as everything else).
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
#define MAX_DEPTH 128
#define MAX_NAME 256         /* squashfs's own limit; the on-disk size field allows 65536 */
#define KEPT_MODE_BITS 01777 /* setuid and setgid are dropped */

/* An open-addressing map of 64-bit keys (stored +1, so 0 is empty) to values. */
struct seen {
	uint64_t *keys, *values;
	size_t count, cap;
};

struct walk {
	sqfs *fs;
	const char *pattern;
	char *chunk;                  /* CHUNK bytes of file data */
	char *name;                   /* an entry name as read: up to 65536 bytes + NUL */
	char path[PATH_MAX];          /* the entry's path inside the image, for patterns and messages */
	struct seen dirs;             /* directory inode ids already extracted */
	struct seen files;            /* inode number -> inode id of each file extracted */
	struct seen written;          /* inode id -> 1 + index in `paths` of its first extracted name */
	char **paths;                 /* those names, relative to the destination */
	size_t npaths;
	int top;                      /* the destination directory */
	int depth;
};

/* One directory on the way down; fd is -1 until something must be created in it (patterns). */
struct level {
	struct level *up;
	int fd;
	char name[MAX_NAME + 1];
	mode_t mode;
};

static int corrupt(const struct walk *w, const char *what)
{
	report("squashfs image is corrupt: %s at /%s", what, w->path);
	return -1;
}

static int failed(const struct walk *w, const char *what)
{
	report("cannot %s /%s: %s", what, w->path, strerror(errno));
	return -1;
}

static int interrupted(void)
{
	return signal_received() != 0;
}

static int grow(struct seen *seen);

/* Looks key up; inserts it with value when absent. The stored value, or value when it was absent;
 * on out of memory value + 1 (never equal to it). */
static uint64_t remember(struct seen *seen, uint64_t key, uint64_t value)
{
	if (2 * (seen->count + 1) > seen->cap && grow(seen) != 0)
		return value + 1;
	size_t slot = (size_t)((key * 0x9e3779b97f4a7c15ULL) >> 7) % seen->cap;
	for (; seen->keys[slot]; slot = (slot + 1) % seen->cap)
		if (seen->keys[slot] == key + 1)
			return seen->values[slot];
	seen->keys[slot] = key + 1;
	seen->values[slot] = value;
	seen->count++;
	return value;
}

static int grow(struct seen *seen)
{
	size_t cap = seen->cap ? 2 * seen->cap : 64;
	struct seen bigger = {calloc(cap, sizeof(uint64_t)), calloc(cap, sizeof(uint64_t)), 0, cap};
	if (!bigger.keys || !bigger.values) {
		free(bigger.keys), free(bigger.values);
		return -1;
	}
	for (size_t i = 0; i < seen->cap; i++)
		if (seen->keys[i])
			remember(&bigger, seen->keys[i] - 1, seen->values[i]);
	free(seen->keys), free(seen->values);
	*seen = bigger;
	return 0;
}

static int safe_name(const char *name, size_t size)
{
	return size > 0 && size <= MAX_NAME && memchr(name, '/', size) == NULL &&
	       memchr(name, '\0', size) == NULL && strcmp(name, ".") != 0 && strcmp(name, "..") != 0;
}

/* Opens (creating it if needed) the output directory of level and of each level above it. */
static int open_level(struct walk *w, struct level *level)
{
	if (level->fd >= 0)
		return level->fd;
	int parent = open_level(w, level->up);
	if (parent < 0)
		return -1;
	if (mkdirat(parent, level->name, 0700) != 0 && errno != EEXIST)
		return failed(w, "create directory");
	level->fd = openat(parent, level->name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (level->fd < 0)
		return failed(w, "open directory");
	fchmod(level->fd, 0700); /* a read-only directory from an earlier extraction must take entries */
	return level->fd;
}

/* Makes room for a new entry called name in dir: whatever was there goes (never a directory). */
static int clear_name(const struct walk *w, int dir, const char *name)
{
	if (unlinkat(dir, name, 0) == 0 || errno == ENOENT)
		return 0;
	return failed(w, "replace");
}

static int is_zero(const char *buf, size_t size)
{
	return buf[0] == 0 && buf[size - 1] == 0 && memcmp(buf, buf + 1, size - 1) == 0;
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

static int copy_data(struct walk *w, sqfs_inode *inode, int fd)
{
	uint64_t size = inode->xtra.reg.file_size;
	for (uint64_t pos = 0; pos < size && !interrupted();) {
		sqfs_off_t want = size - pos < CHUNK ? (sqfs_off_t)(size - pos) : CHUNK, n = want;
		/* a short read would leave the next one starting inside a block: squashfuse trusts that */
		if (sqfs_read_range(w->fs, inode, (sqfs_off_t)pos, &n, w->chunk) != SQFS_OK || n != want)
			return corrupt(w, "file data cannot be read");
		int hole = is_zero(w->chunk, (size_t)n);
		if (hole ? lseek(fd, n, SEEK_CUR) < 0 : write_all(fd, w->chunk, (size_t)n) != 0)
			return failed(w, "write");
		pos += (uint64_t)n;
	}
	if (ftruncate(fd, (off_t)size) != 0)
		return failed(w, "write");
	return interrupted() ? -1 : 0;
}

/* Opens the directory holding path (relative to the destination), never following a symlink;
 * *base is path's last component. */
static int open_parent(const struct walk *w, const char *path, const char **base)
{
	char component[MAX_NAME + 1];
	int fd = dup(w->top);
	const char *at = path;
	for (size_t n; fd >= 0 && (n = strcspn(at, "/")) < strlen(at); at += n + 1) {
		if (n > MAX_NAME)
			n = MAX_NAME;
		memcpy(component, at, n);
		component[n] = '\0';
		int next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		close(fd);
		fd = next;
	}
	*base = at;
	return fd;
}

/* A hard link at dir/name to the copy of this inode extracted first, at `first`. */
static int link_to_first(struct walk *w, const char *first, int dir, const char *name)
{
	const char *base;
	int parent = open_parent(w, first, &base);
	int status = parent >= 0 && clear_name(w, dir, name) == 0 && linkat(parent, base, dir, name, 0) == 0
		? 0 : failed(w, "link");
	if (parent >= 0)
		close(parent);
	return status;
}

/* The name under which inode id was written already, or NULL (then w->path is remembered as it). */
static const char *first_name(struct walk *w, sqfs_inode_id id)
{
	char **grown = realloc(w->paths, (w->npaths + 1) * sizeof *w->paths);
	if (!grown)
		return NULL;
	w->paths = grown;
	uint64_t index = remember(&w->written, id, w->npaths + 1);
	if (index <= w->npaths)
		return w->paths[index - 1];
	if (index == w->npaths + 1 && (w->paths[w->npaths] = strdup(w->path)))
		w->npaths++;
	return NULL;
}

static int extract_file(struct walk *w, sqfs_inode *inode, sqfs_inode_id id, int dir, const char *name)
{
	/* hard links share number and inode; squashfuse caches block indexes by number alone */
	if (remember(&w->files, inode->base.inode_number, id) != id)
		return corrupt(w, "two files share an inode number");
	if (!guard_file(w->fs, inode))
		return corrupt(w, "a file's block list or fragment lies outside the image");
	const char *first = first_name(w, id);
	if (first)
		return link_to_first(w, first, dir, name);
	if (clear_name(w, dir, name) != 0)
		return -1;
	int fd = openat(dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return failed(w, "create");
	int status = copy_data(w, inode, fd);
	if (status == 0 && fchmod(fd, inode->base.mode & KEPT_MODE_BITS) != 0)
		status = failed(w, "set the mode of");
	if (close(fd) != 0 && status == 0)
		status = failed(w, "write");
	return status;
}

static int extract_symlink(struct walk *w, sqfs_inode *inode, int dir, const char *name)
{
	char target[PATH_MAX];
	size_t size = sizeof target;
	if (!guard_symlink(inode) || sqfs_readlink(w->fs, inode, target, &size) != SQFS_OK)
		return corrupt(w, "symlink target cannot be read");
	if (clear_name(w, dir, name) != 0)
		return -1;
	return symlinkat(target, dir, name) == 0 ? 0 : failed(w, "create symlink");
}

static int extract_children(struct walk *w, sqfs_inode *dir_inode, struct level *here);

static int extract_directory(struct walk *w, sqfs_inode *inode, sqfs_inode_id id, struct level *up,
			     const char *name, int matched)
{
	uint64_t mark = w->dirs.count; /* unique: a directory seen before holds an older mark */
	if (remember(&w->dirs, id, mark) != mark)
		return corrupt(w, "a directory appears twice (a loop)");
	if (w->depth >= MAX_DEPTH)
		return corrupt(w, "directories nest too deep");
	struct level here = {.up = up, .fd = -1, .mode = inode->base.mode & KEPT_MODE_BITS};
	memcpy(here.name, name, strlen(name) + 1);
	if (matched && open_level(w, &here) < 0)
		return -1;
	w->depth++;
	int status = extract_children(w, inode, &here);
	w->depth--;
	if (here.fd >= 0) {
		if (status == 0 && fchmod(here.fd, here.mode) != 0)
			status = failed(w, "set the mode of");
		close(here.fd);
	}
	return status;
}

static int extract_entry(struct walk *w, sqfs_dir_entry *entry, struct level *here)
{
	sqfs_inode inode;
	const char *name = sqfs_dentry_name(entry);
	size_t length = strlen(w->path), size = sqfs_dentry_name_size(entry);
	if (!safe_name(name, size))
		return corrupt(w, "an unsafe entry name (empty, \".\", \"..\", too long or with a '/')");
	if (path_printf(w->path + length, sizeof w->path - length, "%s%s", length ? "/" : "", name))
		return -1;
	int matched = extract_pattern_matches(w->pattern, w->path), status = 0;
	if (!guard_inode_ref(w->fs, sqfs_dentry_inode(entry)) ||
	    sqfs_inode_get(w->fs, &inode, sqfs_dentry_inode(entry)) != SQFS_OK)
		status = corrupt(w, "its inode cannot be read");
	else if (S_ISDIR(inode.base.mode))
		status = extract_directory(w, &inode, sqfs_dentry_inode(entry), here, name, matched);
	else if (matched && S_ISREG(inode.base.mode))
		status = open_level(w, here) < 0 ? -1
			 : extract_file(w, &inode, sqfs_dentry_inode(entry), here->fd, name);
	else if (matched && S_ISLNK(inode.base.mode))
		status = open_level(w, here) < 0 ? -1 : extract_symlink(w, &inode, here->fd, name);
	/* devices, fifos and sockets have no place in an AppDir */
	w->path[length] = '\0';
	return status;
}

static int extract_children(struct walk *w, sqfs_inode *dir_inode, struct level *here)
{
	sqfs_dir dir;
	sqfs_dir_entry entry;
	sqfs_err err = SQFS_OK;
	if (dir_open_at(w->fs, dir_inode, &dir, 0) != 0)
		return corrupt(w, "a directory cannot be read");
	sqfs_dentry_init(&entry, w->name);
	while (!interrupted() && sqfs_dir_next(w->fs, &dir, &entry, &err)) {
		w->name[sqfs_dentry_name_size(&entry)] = '\0';
		if (extract_entry(w, &entry, here) != 0)
			return -1;
	}
	if (err != SQFS_OK)
		return corrupt(w, "a directory cannot be read");
	return interrupted() ? -1 : 0;
}

static int open_dest(const char *dest)
{
	if (mkdir(dest, 0755) != 0 && errno != EEXIST) {
		report("cannot create %s: %s", dest, strerror(errno));
		return -1;
	}
	int fd = open(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		report("cannot open %s: %s", dest, strerror(errno));
	return fd;
}

/* Extracts the image (or the entries matching pattern) into dest; prints why and returns -1 on failure. */
int extract_tree(const struct image *img, const char *dest, const char *pattern)
{
	sqfs fs;
	sqfs_inode root;
	int image_fd = -1, status = -1;
	struct walk *w = calloc(1, sizeof *w);
	struct level top = {.up = NULL, .fd = -1};
	if (!w || !(w->chunk = malloc(CHUNK)) || !(w->name = malloc(NAME_BUFFER))) {
		report("out of memory");
	} else if (image_fs_init(img, &fs, &image_fd) != SQFS_OK) {
		report("cannot read the squashfs image in %s", img->path);
	} else {
		w->fs = &fs, w->pattern = pattern;
		sqfs_inode_id root_id = sqfs_inode_root(&fs);
		if (!guard_inode_ref(&fs, root_id) || sqfs_inode_get(&fs, &root, root_id) != SQFS_OK ||
		    !S_ISDIR(root.base.mode))
			corrupt(w, "the root directory cannot be read");
		else if (remember(&w->dirs, root_id, 0) == 0 && (top.fd = w->top = open_dest(dest)) >= 0)
			status = extract_children(w, &root, &top);
		if (top.fd >= 0)
			close(top.fd);
		image_fs_destroy(&fs);
	}
	if (image_fd >= 0)
		close(image_fd);
	for (size_t i = 0; w && i < w->npaths; i++)
		free(w->paths[i]);
	if (w)
		free(w->dirs.keys), free(w->dirs.values), free(w->files.keys), free(w->files.values),
			free(w->written.keys), free(w->written.values), free(w->paths), free(w->chunk),
			free(w->name);
	free(w);
	return status;
}

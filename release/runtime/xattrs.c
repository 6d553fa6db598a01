/*
 * Extended attributes, read by us instead of squashfuse 0.1.105's xattr.c.
 *
 * Why not squashfuse's: sqfs_xattr_find skips an entry only when its prefix AND its name length
 * differ (`&&` where `||` is meant), then reads the stored name into a buffer the size of the
 * name asked for. Asking a well-formed `mksquashfs -xattrs` image for an absent name with a
 * stored name's prefix (user.b when user.longer is stored) overflows the heap. It also trusts
 * every reference: the inode's xattr index (sqfs_table_get has no bound), the first entry's and
 * each out-of-line value's offset in its metadata block, and a value size of up to 4 GiB; and it
 * names prefix 1 "security." where squashfs (and the kernel) have "trusted.".
 *
 * The layout (squashfs 4.0): the inode's index selects a 16-byte id (a reference to the first
 * entry, a count); each entry is `u16 type, u16 size, name[size]`, then `u32 vsize, value[vsize]`,
 * or with type's 0x100 bit an 8-byte reference to where `u32 vsize, value` is stored out of line.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include <squashfuse/squashfuse.h>

#include "appimage.h"

#define VALUE_MAX (64u << 10) /* XATTR_SIZE_MAX: the kernel asks no more */
#define PREFIX_MASK 0xff

static const struct {
	const char *text;
	size_t size;
} prefixes[] = {{"user.", 5}, {"trusted.", 8}, {"security.", 9}};
#define NPREFIXES (sizeof prefixes / sizeof prefixes[0])

struct xattr_walk {
	sqfs *fs;
	sqfs_md_cursor at;
	uint32_t remain;
};

/* One entry: its prefix, its name (without prefix: up to 64 KiB, into the caller's buffer) and
 * where its `u32 vsize, value` lies. */
struct xattr_entry {
	unsigned prefix;
	uint16_t size;
	sqfs_md_cursor value;
};

static int read_le(sqfs *fs, sqfs_md_cursor *cur, void *out, size_t size)
{
	return sqfs_md_read(fs, cur, out, size) == SQFS_OK ? 0 : EIO;
}

/* A cursor for reference ref into the xattr table, if its offset lies inside its block. */
static int xattr_cursor(sqfs *fs, uint64_t ref, sqfs_md_cursor *cur)
{
	uint64_t start = fs->xattr_info.xattr_table_start;
	if (!guard_metadata_ref(fs, start, ref >> 16, ref & 0xffff))
		return EIO;
	cur->block = (sqfs_off_t)(start + (ref >> 16));
	cur->offset = (size_t)(ref & 0xffff);
	return 0;
}

/* Starts a walk over inode's entries (none: remain 0); an errno when the image is corrupt. */
static int xattr_begin(sqfs *fs, const sqfs_inode *inode, struct xattr_walk *w)
{
	struct squashfs_xattr_id id;
	w->fs = fs;
	w->remain = 0;
	if (fs->xattr_info.xattr_ids == 0 || inode->xattr == SQUASHFS_INVALID_XATTR)
		return 0;
	if (inode->xattr >= fs->xattr_info.xattr_ids ||
	    sqfs_table_get(&fs->xattr_table, fs, inode->xattr, &id) != SQFS_OK)
		return EIO;
	w->remain = le32toh(id.count);
	return xattr_cursor(fs, le64toh(id.xattr), &w->at);
}

/* The next entry, its name into name (64 KiB); the walk moves past its value. */
static int xattr_next(struct xattr_walk *w, struct xattr_entry *e, char *name)
{
	struct squashfs_xattr_entry head = {0};
	uint32_t vsize;
	uint64_t ref;
	int err = read_le(w->fs, &w->at, &head, sizeof head);
	uint16_t type = le16toh(head.type);
	if (err || (type & PREFIX_MASK) >= NPREFIXES)
		return EIO;
	e->prefix = type & PREFIX_MASK;
	e->size = le16toh(head.size);
	if ((err = read_le(w->fs, &w->at, name, e->size)))
		return err;
	e->value = w->at; /* where `u32 vsize, value` starts (inline) */
	if ((err = read_le(w->fs, &w->at, &vsize, 4)))
		return err;
	vsize = le32toh(vsize);
	w->remain--;
	if (!(type & SQUASHFS_XATTR_VALUE_OOL))
		return vsize > VALUE_MAX ? EIO : read_le(w->fs, &w->at, NULL, vsize);
	if (vsize != sizeof ref || (err = read_le(w->fs, &w->at, &ref, sizeof ref)))
		return EIO;
	return xattr_cursor(w->fs, le64toh(ref), &e->value);
}

/* The value at e->value into buf (NULL: only its size) of cap bytes; *size its size. */
static int xattr_value(sqfs *fs, const struct xattr_entry *e, char *buf, size_t cap, size_t *size)
{
	sqfs_md_cursor at = e->value;
	uint32_t vsize;
	int err = read_le(fs, &at, &vsize, 4);
	if (err)
		return err;
	*size = le32toh(vsize);
	if (*size > VALUE_MAX)
		return EIO;
	if (!buf)
		return 0;
	return *size > cap ? ERANGE : read_le(fs, &at, buf, *size);
}

/* getxattr: name's value into buf (cap bytes; NULL asks only the size), its size in *size. 0,
 * ENODATA when inode has no such attribute, ERANGE when cap is too small, EIO when corrupt.
 * name_buffer holds NAME_BUFFER bytes. */
int xattr_get(sqfs *fs, const sqfs_inode *inode, const char *name, char *buf, size_t cap, size_t *size,
	      char *name_buffer)
{
	struct xattr_walk w;
	struct xattr_entry e;
	unsigned prefix = 0;
	while (prefix < NPREFIXES && strncmp(name, prefixes[prefix].text, prefixes[prefix].size) != 0)
		prefix++;
	if (prefix == NPREFIXES)
		return ENODATA;
	const char *rest = name + prefixes[prefix].size;
	size_t rest_size = strlen(rest);
	int err = xattr_begin(fs, inode, &w);
	while (!err && w.remain > 0) {
		if ((err = xattr_next(&w, &e, name_buffer)))
			break;
		if (e.prefix == prefix && e.size == rest_size && memcmp(name_buffer, rest, rest_size) == 0)
			return xattr_value(fs, &e, buf, cap, size);
	}
	return err ? err : ENODATA;
}

/* listxattr: every name, prefixed and NUL-terminated, into buf (cap bytes; NULL asks only the
 * size); the bytes needed in *size. 0, ERANGE, or EIO. name_buffer holds NAME_BUFFER bytes. */
int xattr_list(sqfs *fs, const sqfs_inode *inode, char *buf, size_t cap, size_t *size, char *name_buffer)
{
	struct xattr_walk w;
	struct xattr_entry e;
	int err = xattr_begin(fs, inode, &w);
	*size = 0;
	while (!err && w.remain > 0 && !(err = xattr_next(&w, &e, name_buffer))) {
		size_t prefix = prefixes[e.prefix].size, need = prefix + e.size + 1;
		if (buf && need > cap - *size)
			return ERANGE;
		if (buf) {
			memcpy(buf + *size, prefixes[e.prefix].text, prefix);
			memcpy(buf + *size + prefix, name_buffer, e.size);
			buf[*size + need - 1] = '\0';
		}
		*size += need;
	}
	return err;
}

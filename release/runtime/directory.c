/*
 * Directory lookups and listings that never use squashfuse's directory index.
 *
 * An extended directory inode carries an index (start_block, index, name size, name) that
 * squashfuse follows to skip ahead: it copies an index name of up to 4 GiB into the caller's
 * buffer (a lookup overflowed the FUSE server's 64 KiB name buffer), and a listing resumed at an
 * offset trusts the index's start_block and index (a heap read out of bounds). The index only
 * makes large directories faster to search, so these functions walk the entries from the start:
 * a listing's first cursor is checked by guard_directory, every later one is where the previous
 * read ended, and each name is at most 64 KiB (NAME_BUFFER). Directories here hold a few hundred
 * entries in cached metadata blocks: a walk costs microseconds, and the kernel caches the answers.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <squashfuse/squashfuse.h>

#include "appimage.h"

/* dir's listing, positioned at offset (0, or a next offset an earlier listing gave); 0 or -1. */
int dir_open_at(sqfs *fs, sqfs_inode *dir, sqfs_dir *listing, off_t offset)
{
	sqfs_dir_entry entry;
	sqfs_err err = SQFS_OK;
	if (!S_ISDIR(dir->base.mode) || !guard_directory(fs, dir) || sqfs_dir_open(fs, dir, listing, 0) != SQFS_OK)
		return -1;
	sqfs_dentry_init(&entry, NULL); /* names are skipped, not copied */
	while (listing->offset < offset && sqfs_dir_next(fs, listing, &entry, &err))
		;
	return err == SQFS_OK && listing->offset == offset ? 0 : -1;
}

/* Finds name (size bytes) in dir: 0 with *found and *entry (whose name buffer holds NAME_BUFFER
 * bytes), or -1 when the listing cannot be read. mksquashfs sorts entries by name, so the walk
 * stops at the first name past it (an unsorted, hostile image only loses names). */
int dir_lookup(sqfs *fs, sqfs_inode *dir, const char *name, size_t size, sqfs_dir_entry *entry, bool *found)
{
	sqfs_dir listing;
	sqfs_err err = SQFS_OK;
	*found = false;
	if (dir_open_at(fs, dir, &listing, 0) != 0)
		return -1;
	while (!*found && sqfs_dir_next(fs, &listing, entry, &err)) {
		size_t have = sqfs_dentry_name_size(entry);
		int order = memcmp(sqfs_dentry_name(entry), name, have < size ? have : size);
		if (order > 0 || (order == 0 && have > size))
			break;
		*found = order == 0 && have == size;
	}
	return err == SQFS_OK ? 0 : -1;
}

/* The inode at path ("a/b/c", below the root) into *inode: 0 with *found, or -1 when the image
 * cannot be read on the way. Every inode reference is guarded before it is read. */
int image_lookup(sqfs *fs, const char *path, sqfs_inode *inode, bool *found)
{
	sqfs_dir_entry entry;
	char *name = malloc(NAME_BUFFER);
	int status = -1;
	*found = false;
	if (!name || !guard_inode_ref(fs, sqfs_inode_root(fs)) ||
	    sqfs_inode_get(fs, inode, sqfs_inode_root(fs)) != SQFS_OK)
		goto done;
	sqfs_dentry_init(&entry, name);
	for (const char *at = path + strspn(path, "/"); *at; at += strspn(at, "/")) {
		size_t size = strcspn(at, "/");
		bool here;
		if (dir_lookup(fs, inode, at, size, &entry, &here) != 0)
			goto done;
		if (!here) {
			status = 0;
			goto done;
		}
		if (!guard_inode_ref(fs, sqfs_dentry_inode(&entry)) ||
		    sqfs_inode_get(fs, inode, sqfs_dentry_inode(&entry)) != SQFS_OK)
			goto done;
		at += size;
	}
	*found = true;
	status = 0;
done:
	free(name);
	return status;
}

/*
 * Checks squashfuse does not make. Its readers trust the image: an inode or directory reference
 * whose offset lies past the end of its (short) metadata block, a fragment index past the fragment
 * table, a fragment that ends past its block, or a table whose metadata blocks are shorter than
 * the table makes squashfuse copy out of bounds; a data block "size" of up to 4 GiB makes it
 * allocate that much (all found by benchmarks/fuzz_runtime.py); a uid/gid index past the uid/gid
 * table and a symlink "size" of 4 GiB are used as they are. The runtime asks these before each call
 * that would act on such a value.
 */
#include <sys/stat.h>

#include <squashfuse/squashfuse.h>

#include "appimage.h"

#define METADATA_BLOCK 8192
#define NO_FRAGMENT 0xffffffffu
#define UNCOMPRESSED_BIT (1u << 24)
#define SUPERBLOCK_SIZE 96

/* 1 when offset lies inside (or at the end of) the metadata block at start + block: squashfuse's
 * sqfs_md_read copies from block data + offset without asking. */
int guard_metadata_ref(sqfs *fs, uint64_t start, uint64_t block, uint64_t offset)
{
	sqfs_block *cached;
	sqfs_off_t pos = (sqfs_off_t)(start + block);
	return block < fs->sb.bytes_used && sqfs_md_cache(fs, &pos, &cached) == SQFS_OK &&
	       offset <= cached->size;
}

int guard_inode_ref(sqfs *fs, uint64_t id)
{
	return guard_metadata_ref(fs, fs->sb.inode_table_start, id >> 16, id & 0xffff);
}

int guard_directory(sqfs *fs, const sqfs_inode *dir)
{
	return guard_metadata_ref(fs, fs->sb.directory_table_start, dir->xtra.dir.start_block,
			       dir->xtra.dir.offset);
}

/* A stored data block (size field of a block list or fragment entry) lies inside the image, after
 * the superblock: squashfuse's block cache hands out a NULL block for position 0 (fuzzer). */
static int data_block_ok(const sqfs *fs, uint64_t start, uint32_t header)
{
	uint64_t size = header & ~UNCOMPRESSED_BIT;
	return size <= fs->sb.block_size && start >= SUPERBLOCK_SIZE && start <= fs->sb.bytes_used &&
	       size <= fs->sb.bytes_used - start;
}

static int block_list_ok(sqfs *fs, sqfs_inode *file)
{
	uint64_t table = fs->sb.directory_table_start - fs->sb.inode_table_start;
	if (sqfs_blocklist_count(fs, file) > table * (METADATA_BLOCK / 4) / 3)
		return 0; /* more entries than the inode table can hold (8 KiB per 3-byte block at most) */
	sqfs_blocklist list;
	sqfs_blocklist_init(fs, file, &list);
	while (list.remain > 0)
		if (sqfs_blocklist_next(&list) != SQFS_OK || !data_block_ok(fs, list.block, list.header))
			return 0;
	return 1;
}

static int fragment_ok(sqfs *fs, sqfs_inode *file)
{
	struct squashfs_fragment_entry entry;
	sqfs_block *block;
	size_t offset, size;
	uint32_t index = file->xtra.reg.frag_idx;
	return index == NO_FRAGMENT ||
	       (index < fs->sb.fragments && sqfs_frag_entry(fs, &entry, index) == SQFS_OK &&
		data_block_ok(fs, entry.start_block, entry.size) &&
		sqfs_frag_block(fs, file, &offset, &size, &block) == SQFS_OK && offset <= block->size &&
		size <= block->size - offset);
}

/* A file's blocks must lie in the image, its fragment in the fragment table and inside its block. */
int guard_file(sqfs *fs, sqfs_inode *file)
{
	return block_list_ok(fs, file) && fragment_ok(fs, file);
}

/* Every metadata block of a table holds its full share of count entries of each bytes. */
static int table_ok(sqfs *fs, const sqfs_table *table, uint64_t count)
{
	uint64_t bytes = count * table->each;
	for (uint64_t i = 0; i * METADATA_BLOCK < bytes; i++) {
		sqfs_block *block;
		size_t stored;
		if (sqfs_md_block_read(fs, (sqfs_off_t)table->blocks[i], &stored, &block) != SQFS_OK)
			return 0;
		uint64_t want = bytes - i * METADATA_BLOCK < METADATA_BLOCK ? bytes - i * METADATA_BLOCK
									     : METADATA_BLOCK;
		int ok = block->size >= want;
		sqfs_block_dispose(block);
		if (!ok)
			return 0;
	}
	return 1;
}

int guard_tables(sqfs *fs)
{
	return table_ok(fs, &fs->id_table, fs->sb.no_ids) &&
	       table_ok(fs, &fs->frag_table, fs->sb.fragments) &&
	       (!sqfs_export_ok(fs) || table_ok(fs, &fs->export_table, fs->sb.inodes)) &&
	       table_ok(fs, &fs->xattr_table, fs->xattr_info.xattr_ids);
}

/* An inode's uid and gid indexes lie in the uid/gid table (sqfs_id_get has no bound). */
int guard_ids(const sqfs *fs, const sqfs_inode *inode)
{
	return inode->base.uid < fs->sb.no_ids && inode->base.guid < fs->sb.no_ids;
}

/* A symlink's target fits a PATH_MAX buffer (squashfuse would allocate its u32 size). */
int guard_symlink(const sqfs_inode *link)
{
	return S_ISLNK(link->base.mode) && link->xtra.symlink_size < PATH_MAX;
}

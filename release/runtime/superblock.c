/*
 * Checking a squashfs superblock ourselves before squashfuse sees it. squashfuse trusts its fields:
 * a block_size of 0 divides by zero, no_ids of 0 or a table offset past the end of the file sends
 * it reading garbage. Each rule below is what mksquashfs always writes (squashfs 4.0):
 *   - block_size a power of two in [4 KiB, 1 MiB], equal to 1 << block_log;
 *   - at least one inode and one uid/gid (no_ids), the root inode inside the inode table;
 *   - tables in their order inode < directory < {fragment, export, id, xattr} <= bytes_used,
 *     each index (and the id and fragment indexes in full) inside bytes_used, which the file holds.
 */
#include <stdint.h>
#include <string.h>

#include "appimage.h"

#define NO_TABLE UINT64_MAX
#define METADATA_BLOCK 8192

struct fields {
	uint32_t magic, inodes, block_size, fragments;
	uint16_t block_log, no_ids, major;
	uint64_t root, bytes_used, id_table, xattr_table, inode_table, dir_table, frag_table, lookup_table;
};

static uint64_t le(const unsigned char *p, int width)
{
	uint64_t value = 0;
	for (int i = width - 1; i >= 0; i--)
		value = (value << 8) | p[i];
	return value;
}

static struct fields parse(const unsigned char *raw)
{
	return (struct fields){
		.magic = (uint32_t)le(raw, 4), .inodes = (uint32_t)le(raw + 4, 4),
		.block_size = (uint32_t)le(raw + 12, 4), .fragments = (uint32_t)le(raw + 16, 4),
		.block_log = (uint16_t)le(raw + 22, 2), .no_ids = (uint16_t)le(raw + 26, 2),
		.major = (uint16_t)le(raw + 28, 2), .root = le(raw + 32, 8), .bytes_used = le(raw + 40, 8),
		.id_table = le(raw + 48, 8), .xattr_table = le(raw + 56, 8), .inode_table = le(raw + 64, 8),
		.dir_table = le(raw + 72, 8), .frag_table = le(raw + 80, 8), .lookup_table = le(raw + 88, 8),
	};
}

/* Bytes of the index of a table of `count` entries of `size` bytes (one u64 per metadata block). */
static uint64_t index_bytes(uint64_t count, uint64_t size)
{
	return 8 * ((count * size + METADATA_BLOCK - 1) / METADATA_BLOCK);
}

static int table_in_place(const struct fields *f, uint64_t start, uint64_t length)
{
	return start > f->dir_table && start <= f->bytes_used && length <= f->bytes_used - start;
}

static const char *tables_problem(const struct fields *f)
{
	if (f->inode_table < 96 || f->inode_table >= f->dir_table || f->dir_table >= f->bytes_used)
		return "its inode and directory tables are out of order";
	if ((f->root >> 16) >= f->dir_table - f->inode_table || (f->root & 0xffff) >= METADATA_BLOCK)
		return "its root inode lies outside the inode table";
	if (!table_in_place(f, f->id_table, index_bytes(f->no_ids, 4)))
		return "its uid/gid table lies outside the image";
	if (f->frag_table != NO_TABLE && !table_in_place(f, f->frag_table, index_bytes(f->fragments, 16)))
		return "its fragment table lies outside the image";
	if (f->lookup_table != NO_TABLE && !table_in_place(f, f->lookup_table, index_bytes(f->inodes, 8)))
		return "its export table lies outside the image";
	if (f->xattr_table != NO_TABLE && !table_in_place(f, f->xattr_table, 16))
		return "its xattr table lies outside the image";
	return NULL;
}

const char *superblock_problem(const unsigned char raw[96], uint64_t available)
{
	struct fields f = parse(raw);
	if (f.magic != 0x73717368)
		return "no squashfs magic (corrupt or not an AppImage)";
	if (f.major != 4)
		return "unsupported squashfs version";
	if (f.block_size < 4096 || f.block_size > (1u << 20) || f.block_log > 20 ||
	    f.block_size != (1u << f.block_log))
		return "its block size is invalid";
	if (f.inodes == 0 || f.no_ids == 0)
		return "it claims no inodes or no uid/gid entries";
	if (f.bytes_used > available)
		return NULL; /* reported as truncated, with the sizes, by the caller */
	return tables_problem(&f);
}

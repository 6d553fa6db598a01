/*
 * What an image is, for the two things runs share: the shared mount and the extract-and-run cache.
 *
 * The packager writes the sha256 of the squashfs into the runtime's .sqfs_sha256 section. Nothing
 * guarantees it: any file can carry any bytes there (a hostile one, or an AppImage assembled from
 * another AppImage's runtime, which carries that one's digest). So:
 *   - the digest is read from the image actually run (TARGET_APPIMAGE's file, not this program);
 *   - the shared mount is keyed by the file's identity instead (device, inode, size, modification
 *     and change times, hashed): runs share a mount only when they run the very same unchanged
 *     file, so the mount serves exactly the bytes of the file being run, at the cost of an fstat
 *     (copies of one AppImage in two places get a mount each);
 *   - an extracted tree is stored and reused under the digest only once the digest has been
 *     checked against the squashfs it names. Hashing 4.5 GB at every start is out of the question,
 *     so the check is made once per file identity and remembered in the user's private cache
 *     directory (verified_<identity key>, holding the digest): a file that is replaced or written
 *     to gets a new change time (which, unlike the modification time, nobody can set back), so a
 *     new identity, and is checked again. sha256.c hashes with the CPU's SHA instructions: about
 *     1.5 s of CPU per GB, once per new file, only for extract-and-run with a shared tree.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appimage.h"

#define DIGEST_SECTION ".sqfs_sha256"
#define CHUNK (1 << 20)

static void to_hex(const unsigned char digest[32], char hex[65])
{
	for (int i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

/* The digest embedded in the image's own runtime, as hex: 1, or 0 when it has none (all zero, no
 * such section, or one that lies outside the ELF part). */
int image_digest(const struct image *img, char hex[65])
{
	unsigned char digest[32] = {0}, any = 0;
	off_t offset;
	size_t size;
	int fd = open(img->path, O_RDONLY | O_CLOEXEC);
	int found = fd >= 0 && elf_section(fd, DIGEST_SECTION, &offset, &size) == 0 && size == sizeof digest &&
		    offset >= 0 && offset <= img->offset - (off_t)size &&
		    pread(fd, digest, sizeof digest, offset) == (ssize_t)sizeof digest;
	if (fd >= 0)
		close(fd);
	for (int i = 0; i < 32; i++)
		any |= digest[i];
	to_hex(digest, hex);
	return found && any;
}

static void put_le(unsigned char *out, uint64_t value)
{
	for (int i = 0; i < 8; i++)
		out[i] = (unsigned char)(value >> (8 * i));
}

/* The identity of the open file, hashed into hex. */
static int identity_of(int fd, char hex[65])
{
	struct stat st;
	unsigned char fields[7 * 8], digest[32];
	struct sha256 h;
	if (fstat(fd, &st) != 0)
		return 0;
	uint64_t values[7] = {st.st_dev, st.st_ino, (uint64_t)st.st_size, (uint64_t)st.st_mtim.tv_sec,
			      (uint64_t)st.st_mtim.tv_nsec, (uint64_t)st.st_ctim.tv_sec, (uint64_t)st.st_ctim.tv_nsec};
	for (int i = 0; i < 7; i++)
		put_le(fields + 8 * i, values[i]);
	sha256_init(&h);
	sha256_update(&h, "tea-appimage file identity", 26);
	sha256_update(&h, fields, sizeof fields);
	sha256_final(&h, digest);
	to_hex(digest, hex);
	return 1;
}

/* The shared mount's key: 1 and the hex key, or 0 when the file cannot be stat'ed. */
int image_identity_key(const struct image *img, char hex[65])
{
	int fd = open(img->path, O_RDONLY | O_CLOEXEC);
	int ok = fd >= 0 && identity_of(fd, hex);
	if (fd >= 0)
		close(fd);
	return ok;
}

/* 1 when the squashfs of the open image, [offset, end), hashes to digest_hex. */
static int squashfs_matches(int fd, off_t offset, const char *digest_hex)
{
	unsigned char digest[32];
	char hex[65], *buf = malloc(CHUNK);
	struct sha256 h;
	ssize_t n = -1;
	sha256_init(&h);
	while (buf && (n = pread(fd, buf, CHUNK, offset)) > 0) {
		sha256_update(&h, buf, (size_t)n);
		offset += n;
	}
	sha256_final(&h, digest);
	free(buf);
	to_hex(digest, hex);
	return n == 0 && strcmp(hex, digest_hex) == 0;
}

/* The digest remembered for identity in dir_fd (a private directory of this user), into hex. */
static int remembered(int dir_fd, const char *name, char hex[65])
{
	struct stat st;
	int fd = openat(dir_fd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	int ok = fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
		 !(st.st_mode & (S_IWGRP | S_IWOTH)) && read(fd, hex, 64) == 64;
	hex[64] = '\0';
	if (fd >= 0)
		close(fd);
	return ok;
}

static void remember_verified(int dir_fd, const char *name, const char *digest_hex)
{
	char partial[128];
	snprintf(partial, sizeof partial, "%s.%d", name, (int)getpid());
	int fd = openat(dir_fd, partial, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	int written = write(fd, digest_hex, 64) == 64;
	if (close(fd) == 0 && written && renameat(dir_fd, partial, dir_fd, name) == 0)
		return;
	unlinkat(dir_fd, partial, 0);
}

/*
 * 1 when digest_hex (image_digest's) is the sha256 of img's squashfs: known from an earlier check
 * of this very file (a record in dir_fd, the user's private cache directory), or hashed now and
 * recorded. 0 when it is not (said in one line), or the image cannot be read.
 */
int image_digest_verified(const struct image *img, int dir_fd, const char *digest_hex)
{
	char before[65], after[65], name[96], known[65];
	int fd = open(img->path, O_RDONLY | O_CLOEXEC), ok = 0;
	if (fd < 0 || !identity_of(fd, before))
		goto done;
	snprintf(name, sizeof name, "verified_%s", before);
	if (remembered(dir_fd, name, known) && strcmp(known, digest_hex) == 0) {
		ok = 1;
		goto done;
	}
	ok = squashfs_matches(fd, img->offset, digest_hex);
	if (!ok)
		report("the squashfs sha256 embedded in %s does not match its content: its extraction is not "
		       "shared", img->path);
	else if (identity_of(fd, after) && strcmp(before, after) == 0) /* unchanged while hashed */
		remember_verified(dir_fd, name, digest_hex);
done:
	if (fd >= 0)
		close(fd);
	return ok;
}

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
 *     to gets a new change time, so a new identity, and is checked again. The kernel's sha256
 *     (AF_ALG: SHA extensions where the CPU has them) hashes; sha256.c when it is unavailable.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/if_alg.h>

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

/* sha256 of [offset, end) of fd with the kernel's implementation; -1 when AF_ALG is unavailable
 * before anything was read, -2 on a read error. */
static int kernel_sha256(int fd, off_t offset, char *buf, unsigned char out[32])
{
	struct sockaddr_alg alg = {.salg_family = AF_ALG, .salg_type = "hash", .salg_name = "sha256"};
	int tfm = socket(AF_ALG, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), op = -1, status = -1;
	if (tfm < 0 || bind(tfm, (struct sockaddr *)&alg, sizeof alg) != 0 || (op = accept4(tfm, NULL, 0, SOCK_CLOEXEC)) < 0)
		goto done;
	for (ssize_t n; (n = pread(fd, buf, CHUNK, offset)) != 0; offset += n)
		if (n < 0 || send(op, buf, (size_t)n, MSG_MORE) != n) {
			status = -2;
			goto done;
		}
	status = send(op, NULL, 0, 0) == 0 && read(op, out, 32) == 32 ? 0 : -2;
done:
	if (op >= 0)
		close(op);
	if (tfm >= 0)
		close(tfm);
	return status;
}

static int portable_sha256(int fd, off_t offset, char *buf, unsigned char out[32])
{
	struct sha256 h;
	ssize_t n;
	sha256_init(&h);
	for (; (n = pread(fd, buf, CHUNK, offset)) > 0; offset += n)
		sha256_update(&h, buf, (size_t)n);
	sha256_final(&h, out);
	return n == 0 ? 0 : -2;
}

/* 1 when the squashfs of the open image hashes to digest_hex. */
static int squashfs_matches(int fd, off_t offset, const char *digest_hex)
{
	unsigned char digest[32];
	char hex[65], *buf = malloc(CHUNK);
	int status = buf ? kernel_sha256(fd, offset, buf, digest) : -2;
	if (status == -1)
		status = portable_sha256(fd, offset, buf, digest);
	free(buf);
	to_hex(digest, hex);
	return status == 0 && strcmp(hex, digest_hex) == 0;
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

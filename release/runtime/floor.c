/*
 * The glibc floor: on a system older than the AppImage was built for, say so in one line and
 * exit 1, instead of failing later inside the dynamic loader ("GLIBC_2.35 not found").
 *
 * The packager records "<name> <min glibc>" at .tea/glibc-floor in the image (the highest
 * GLIBC_ symbol version any bundled ELF needs). It is read with squashfuse's reader, after
 * image_check and with the same guards as extraction (directory.c's lookup, guard_file), before
 * anything is mounted or extracted. The system's glibc release is read from the banner inside
 * its libc.so.6 ("GNU C Library (...) stable release version 2.31."), without running anything.
 * An image without the file, or a system whose libc.so.6 is not found (not glibc: then the
 * loader's own error is the best there is), is not checked. main.c asks only on the paths that
 * run the app: informational --appimage-* options, extract and mount always work.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/squashfuse.h>

#include "appimage.h"

#define FLOOR_FILE ".tea/glibc-floor"

static const char *const libc_paths[] = {
#if defined(__x86_64__)
	"/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6",
#elif defined(__aarch64__)
	"/lib/aarch64-linux-gnu/libc.so.6", "/usr/lib/aarch64-linux-gnu/libc.so.6",
#endif
	"/lib64/libc.so.6", "/usr/lib64/libc.so.6", "/usr/lib/libc.so.6", "/lib/libc.so.6", NULL,
};

/* "2.31" -> 2 * 1000 + 31; 0 for anything else. */
static long version_number(const char *text)
{
	char *end;
	long major = strtol(text, &end, 10);
	if (end == text || *end != '.' || major <= 0)
		return 0;
	const char *minor_text = end + 1;
	long minor = strtol(minor_text, &end, 10);
	return end == minor_text || minor < 0 || minor >= 1000 ? 0 : major * 1000 + minor;
}

/* Reads "<name> <version>" from the image into name/version; 0 on success. */
static int read_floor(const struct image *img, char *name, size_t name_cap, char *version, size_t version_cap)
{
	char text[128] = {0};
	sqfs fs;
	sqfs_inode inode;
	bool found = false;
	int fd, status = -1;
	sqfs_err err = image_fs_init(img, &fs, &fd);
	if (err == SQFS_OK && image_lookup(&fs, FLOOR_FILE, &inode, &found) == 0 && found &&
	    S_ISREG(inode.base.mode) && guard_file(&fs, &inode)) {
		sqfs_off_t size = sizeof text - 1;
		if (sqfs_read_range(&fs, &inode, 0, &size, text) == SQFS_OK) {
			char format[32];
			snprintf(format, sizeof format, "%%%zus %%%zus", name_cap - 1, version_cap - 1);
			status = sscanf(text, format, name, version) == 2 ? 0 : -1;
		}
	}
	if (err == SQFS_OK)
		image_fs_destroy(&fs);
	if (fd >= 0)
		close(fd);
	return status;
}

/* The glibc release in a libc.so.6's banner, copied into out; 0 on success. */
static int banner_version(const char *path, char *out, size_t cap)
{
	static const char marker[] = " release version ";
	struct stat st;
	int status = -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	void *data = fstat(fd, &st) == 0 && st.st_size > 0
		? mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0) : MAP_FAILED;
	close(fd);
	if (data == MAP_FAILED)
		return -1;
	const char *start = data, *end = start + st.st_size, *at = start;
	while (status != 0 && (at = memmem(at, (size_t)(end - at), "GNU C Library", 13)) != NULL) {
		const char *line_end = memchr(at, '\n', (size_t)(end - at) < 256 ? (size_t)(end - at) : 256);
		const char *hit = memmem(at, (size_t)((line_end ? line_end : end) - at), marker, sizeof marker - 1);
		if (hit) {
			size_t n = 0;
			for (hit += sizeof marker - 1; hit < end && n + 1 < cap && (hit[n] == '.' || (hit[n] >= '0' && hit[n] <= '9')); n++)
				out[n] = hit[n];
			while (n > 0 && out[n - 1] == '.')
				n--; /* the banner's sentence ends with a full stop */
			out[n] = '\0';
			status = version_number(out) ? 0 : -1;
		}
		at += 13;
	}
	munmap(data, (size_t)st.st_size);
	return status;
}

static int system_glibc(char *out, size_t cap)
{
	for (size_t i = 0; libc_paths[i]; i++)
		if (banner_version(libc_paths[i], out, cap) == 0)
			return 0;
	return -1;
}

/* 0: go on. 1: this system's glibc is older than the image needs (said in one line). */
int floor_check(const struct image *img)
{
	char name[64], needed[16], have[16];
	if (read_floor(img, name, sizeof name, needed, sizeof needed) != 0 ||
	    system_glibc(have, sizeof have) != 0 || version_number(needed) == 0)
		return 0;
	if (version_number(have) >= version_number(needed))
		return 0;
	fprintf(stderr, "%s needs glibc >= %s; this system has %s\n", name, needed, have);
	return 1;
}

/*
 * --appimage-signature and --appimage-updateinformation: print what AppImage tools wrote into
 * the .sha256_sig / .upd_info sections, as type2-runtime does: the text up to the first NUL,
 * then a newline (an unsigned image prints an empty line). A section must lie inside the ELF part
 * (as release/signing.py requires of the signature sections).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "appimage.h"

#define SECTION_MAX (64 << 10) /* the reserved sections are 1-8 KiB; refuse absurd sizes */

int print_section(const struct image *img, const char *name)
{
	off_t offset;
	size_t size;
	int fd = open(img->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		report("cannot open %s: %s", img->path, strerror(errno));
		return 1;
	}
	if (elf_section(fd, name, &offset, &size) != 0 || size > SECTION_MAX) {
		report("%s has no %s section", img->path, name);
		close(fd);
		return 1;
	}
	if (offset < 0 || offset > img->offset - (off_t)size) { /* it would print squashfs bytes */
		report("the %s section of %s lies outside its ELF part", name, img->path);
		close(fd);
		return 1;
	}
	char *text = calloc(1, size + 1);
	int status = text && pread(fd, text, size, offset) == (ssize_t)size ? 0 : 1;
	if (status == 0)
		printf("%s\n", text);
	else
		report("cannot read the %s section of %s", name, img->path);
	free(text);
	close(fd);
	return status;
}

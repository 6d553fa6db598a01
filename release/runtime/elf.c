/*
 * Where the ELF part of the file ends, i.e. where the appended squashfs starts.
 *
 * The linker writes the section header table last, so the end of the ELF is
 * e_shoff + e_shnum * e_shentsize: the same rule appimagetool and libappimage use.
 * Both ELF classes and byte orders are handled so the rule also works for a runtime
 * of another architecture.
 */
#include <elf.h>
#include <stddef.h>
#include <endian.h>
#include <string.h>
#include <unistd.h>

#include "appimage.h"

static uint64_t field(const unsigned char *p, size_t width, int big_endian)
{
	uint64_t value = 0;
	for (size_t i = 0; i < width; i++) {
		size_t at = big_endian ? i : width - 1 - i;
		value = (value << 8) | p[at];
	}
	return value;
}

/* Returns the ELF end offset of the open file, or -1 when it is not an ELF file. */
off_t elf_end_offset(int fd)
{
	unsigned char h[sizeof(Elf64_Ehdr)];
	if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, ELFMAG, SELFMAG) != 0)
		return -1;
	int big = h[EI_DATA] == ELFDATA2MSB;
	if (h[EI_CLASS] == ELFCLASS64)
		return (off_t)(field(h + offsetof(Elf64_Ehdr, e_shoff), 8, big) +
			       field(h + offsetof(Elf64_Ehdr, e_shnum), 2, big) *
				       field(h + offsetof(Elf64_Ehdr, e_shentsize), 2, big));
	if (h[EI_CLASS] == ELFCLASS32)
		return (off_t)(field(h + offsetof(Elf32_Ehdr, e_shoff), 4, big) +
			       field(h + offsetof(Elf32_Ehdr, e_shnum), 2, big) *
				       field(h + offsetof(Elf32_Ehdr, e_shentsize), 2, big));
	return -1;
}

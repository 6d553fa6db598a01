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

/* The file offset and size of the section called name (what AppImage tools write into: .upd_info,
 * .sha256_sig, .sig_key). Returns 0, or -1 when the file has no such section. */
int elf_section(int fd, const char *name, off_t *offset, size_t *size)
{
	unsigned char h[sizeof(Elf64_Ehdr)], s[sizeof(Elf64_Shdr)];
	char found[32];
	if (pread(fd, h, sizeof h, 0) != (ssize_t)sizeof h || memcmp(h, ELFMAG, SELFMAG) != 0)
		return -1;
	int big = h[EI_DATA] == ELFDATA2MSB, wide = h[EI_CLASS] == ELFCLASS64;
	size_t word = wide ? 8 : 4;
	uint64_t shoff = wide ? field(h + offsetof(Elf64_Ehdr, e_shoff), 8, big)
			      : field(h + offsetof(Elf32_Ehdr, e_shoff), 4, big);
	size_t at = wide ? offsetof(Elf64_Ehdr, e_shentsize) : offsetof(Elf32_Ehdr, e_shentsize);
	uint64_t entsize = field(h + at, 2, big), count = field(h + at + 2, 2, big),
		 strndx = field(h + at + 4, 2, big);
	/* sh_name is the first word of a section header; sh_offset and sh_size follow sh_addr */
	size_t off_at = 4 + 4 + word + word, size_at = off_at + word;
	if (entsize < size_at + word || entsize > sizeof s || strndx >= count ||
	    pread(fd, s, entsize, (off_t)(shoff + strndx * entsize)) != (ssize_t)entsize)
		return -1;
	uint64_t names = field(s + off_at, word, big);
	for (uint64_t i = 0; i < count; i++) {
		if (pread(fd, s, entsize, (off_t)(shoff + i * entsize)) != (ssize_t)entsize)
			return -1;
		ssize_t got = pread(fd, found, sizeof found, (off_t)(names + field(s, 4, big)));
		if (got <= 0 || strnlen(found, (size_t)got) == (size_t)got || strcmp(found, name) != 0)
			continue;
		*offset = (off_t)field(s + off_at, word, big);
		*size = (size_t)field(s + size_at, word, big);
		return 0;
	}
	return -1;
}

/*
 * What every libFuzzer target of the runtime does with an input (benchmarks/fuzz_runtime.py):
 * it becomes the squashfs of an image in a memfd, and the runtime's one-line reports go to
 * /dev/null while it runs (FUZZ_RUNTIME_VERBOSE=1 keeps them, to replay a finding).
 */
#ifndef TEA_FUZZ_IMAGE_H
#define TEA_FUZZ_IMAGE_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include "appimage.h"

static int fuzz_quiet = -1, fuzz_saved_stderr = -1;

/* The input as an image (its squashfs at offset 0 of a memfd); returns the memfd. */
static int fuzz_image_open(const uint8_t *data, size_t size, struct image *img)
{
	int fd = memfd_create("image", MFD_CLOEXEC);
	if (fuzz_quiet < 0)
		fuzz_quiet = getenv("FUZZ_RUNTIME_VERBOSE") ? dup(2) : open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	*img = (struct image){.offset = 0, .size = (off_t)size};
	snprintf(img->path, sizeof img->path, "/proc/self/fd/%d", fd);
	snprintf(img->name, sizeof img->name, "fuzz");
	fuzz_saved_stderr = dup(2);
	dup2(fuzz_quiet, 2);
	return fd;
}

static void fuzz_image_close(int fd)
{
	dup2(fuzz_saved_stderr, 2);
	close(fuzz_saved_stderr);
	close(fd);
}

#endif

/*
 * libFuzzer target for the AppImage runtime's image parsing and extraction (benchmarks/fuzz_runtime.py
 * builds and runs it). Each input is a squashfs image; it goes through what the runtime does with
 * its own image: image_check (superblock, tables, root directory), then extract_tree into a fresh
 * directory, then a second extraction over that tree with a pattern. Any crash or sanitizer report
 * is a finding; so is a run over -timeout, and any entry that appears in the sandbox directory
 * next to the target (a write outside the target directory: the harness aborts). The runtime's
 * messages go to /dev/null while an input runs (FUZZ_RUNTIME_VERBOSE=1 keeps them, to replay a
 * finding: `fuzz_runtime /abs/path/to/crash-...`); sanitizer reports go to ASAN_OPTIONS' log_path.
 */
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "appimage.h"

#define TARGET "out"

static int quiet = -1; /* /dev/null: the runtime's one-line reports would flood the log */

/* The sandbox (the working directory) may hold nothing but the target directory. */
static void check_sandbox(void)
{
	DIR *dir = opendir(".");
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		const char *name = entry->d_name;
		if (strcmp(name, ".") && strcmp(name, "..") && strcmp(name, TARGET)) {
			fprintf(stderr, "fuzz_runtime: extraction wrote outside its target: %s\n", name);
			abort();
		}
	}
	closedir(dir);
}

/* In $FUZZ_SANDBOX (fuzz_runtime.py: a directory in /dev/shm that it removes, whatever way
 * libFuzzer ends), else /dev/shm: on a disk shared with other work, file creation latency made
 * inputs time out. */
static char sandbox[PATH_MAX];

static void remove_sandbox(void)
{
	remove_tree(sandbox);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	struct rlimit fsize = {64 << 20, 64 << 20}; /* the fuzzer hunts memory errors, not big outputs */
	const char *parent = getenv("FUZZ_SANDBOX");
	snprintf(sandbox, sizeof sandbox, "%s/fuzz-runtime-XXXXXX", parent ? parent : "/dev/shm");
	if (!mkdtemp(sandbox) || chdir(sandbox) != 0)
		abort();
	atexit(remove_sandbox);
	setrlimit(RLIMIT_FSIZE, &fsize);
	quiet = getenv("FUZZ_RUNTIME_VERBOSE") ? dup(2) : open("/dev/null", O_WRONLY | O_CLOEXEC);
	signal(SIGXFSZ, SIG_IGN);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct image img = {.offset = 0, .size = (off_t)size};
	int fd = memfd_create("image", MFD_CLOEXEC), saved_stderr = dup(2);
	dup2(quiet, 2);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	snprintf(img.path, sizeof img.path, "/proc/self/fd/%d", fd);
	snprintf(img.name, sizeof img.name, "fuzz");
	if (image_check(&img) == 0 && extract_tree(&img, TARGET, NULL) == 0)
		extract_tree(&img, TARGET, "*/*");
	dup2(saved_stderr, 2);
	close(saved_stderr);
	check_sandbox();
	remove_tree(TARGET);
	close(fd);
	return 0;
}

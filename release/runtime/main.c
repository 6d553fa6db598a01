/*
 * Entry point: dispatches the --appimage-* options (see appimage.h for the contract); any other
 * invocation mounts the image and runs AppRun, or extracts and runs it when asked to or when FUSE
 * is unavailable.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "appimage.h"

static const char usage[] =
	"AppImage options:\n"
	"  --appimage-extract [pattern]  extract the contents (or the paths matching the fnmatch\n"
	"                                pattern) to ./squashfs-root\n"
	"  --appimage-extract-and-run    run without FUSE, from an extracted copy\n"
	"                                (same as APPIMAGE_EXTRACT_AND_RUN=1; NO_CLEANUP=1 keeps the\n"
	"                                copy in $TMPDIR for later runs)\n"
	"  --appimage-mount              mount, print the mount point, unmount on Ctrl-C\n"
	"  --appimage-offset             print the offset of the embedded squashfs\n"
	"  --appimage-version            print the runtime version\n"
	"  --appimage-help               print this help\n"
	"Any other arguments are passed to the application.\n"
	"Runs of one AppImage share one FUSE mount, kept APPIMAGE_MOUNT_LINGER seconds (default 5)\n"
	"after the last run so the next one starts warm; APPIMAGE_SHARED_MOUNT=0 mounts per run.\n";

void report(const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	fputs("appimage: ", stderr);
	vfprintf(stderr, fmt, args);
	fputc('\n', stderr);
	va_end(args);
}

const char *temp_dir(void)
{
	const char *dir = getenv("TMPDIR");
	return dir && *dir ? dir : "/tmp";
}

static int run_mounted(const struct image *img, char *argv0, int argc, char **argv)
{
	struct mount m;
	int mounted = shared_mount_enabled() ? shared_mount(img, &m) : mount_start(img, &m);
	if (mounted < 0)
		return 1;
	if (mounted > 0) {
		report("FUSE is not available (%s); extracting and running instead", m.reason);
		return extract_and_run(img, argv0, argc, argv);
	}
	int status = run_apprun(img, m.dir, argv0, argc, argv);
	mount_stop(&m);
	exit_like(status);
}

static int mount_until_signal(const struct image *img)
{
	struct mount m;
	int mounted = mount_start(img, &m);
	if (mounted != 0) {
		if (mounted > 0)
			report("cannot mount: FUSE is not available (%s)", m.reason);
		return 1;
	}
	wait_for_signal(m.dir);
	mount_stop(&m);
	return 0;
}

static int appimage_option(const struct image *img, int argc, char **argv)
{
	const char *opt = argv[1];
	if (strcmp(opt, "--appimage-help") == 0)
		return fputs(usage, stdout) < 0;
	if (strcmp(opt, "--appimage-version") == 0)
		return puts(RUNTIME_VERSION) < 0;
	if (strcmp(opt, "--appimage-offset") == 0)
		return printf("%lld\n", (long long)img->offset) < 0;
	if (strcmp(opt, "--appimage-extract") != 0 && strcmp(opt, "--appimage-extract-and-run") != 0 &&
	    strcmp(opt, "--appimage-mount") != 0) {
		report("unknown option %s (see --appimage-help)", opt);
		return 1;
	}
	if (image_check(img) != 0)
		return 1;
	if (strcmp(opt, "--appimage-extract") == 0)
		return extract_tree(img, "squashfs-root", argc > 2 ? argv[2] : NULL) != 0;
	if (strcmp(opt, "--appimage-mount") == 0)
		return mount_until_signal(img);
	return extract_and_run(img, argv[0], argc - 2, argv + 2);
}

int main(int argc, char **argv)
{
	struct image img;
	const char *extract_and_run_env = getenv("APPIMAGE_EXTRACT_AND_RUN");
	if (image_open(&img) != 0)
		return 1;
	if (argc > 1 && strncmp(argv[1], "--appimage-", 11) == 0)
		return appimage_option(&img, argc, argv);
	if (image_check(&img) != 0)
		return 1;
	if (extract_and_run_env && strcmp(extract_and_run_env, "1") == 0)
		return extract_and_run(&img, argv[0], argc - 1, argv + 1);
	return run_mounted(&img, argv[0], argc - 1, argv + 1);
}

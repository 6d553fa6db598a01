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
	"                                pattern; a directory brings its subtree) to ./squashfs-root\n"
	"  --appimage-extract-and-run    run without FUSE, from an extracted copy\n"
	"                                (same as APPIMAGE_EXTRACT_AND_RUN=1; NO_CLEANUP=1 keeps the\n"
	"                                copy in ~/.cache/appimage for later runs)\n"
	"  --appimage-mount              mount, print the mount point, unmount on Ctrl-C\n"
	"  --appimage-offset             print the offset of the embedded squashfs\n"
	"  --appimage-signature          print the digital signature embedded in the AppImage\n"
	"  --appimage-updateinfo[rmation] print the update information embedded in the AppImage\n"
	"  --appimage-portable-home      create <this file>.home, used as $HOME from then on\n"
	"  --appimage-portable-config    create <this file>.config, used as $XDG_CONFIG_HOME\n"
	"  --appimage-version            print the runtime version\n"
	"  --appimage-help               print this help\n"
	"Any other arguments are passed to the application. TARGET_APPIMAGE=FILE operates on FILE.\n"
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

int path_printf(char *out, size_t cap, const char *fmt, ...)
{
	va_list args;
	va_start(args, fmt);
	int n = vsnprintf(out, cap, fmt, args);
	va_end(args);
	if (n >= 0 && (size_t)n < cap)
		return 0;
	report("path too long: %.80s...", out);
	return -1;
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

/* The options that only read the ELF part or the file's place: no squashfs needed. */
static int information_option(const struct image *img, const char *opt)
{
	if (strcmp(opt, "--appimage-help") == 0)
		return fputs(usage, stdout) < 0;
	if (strcmp(opt, "--appimage-version") == 0)
		return puts(RUNTIME_VERSION) < 0;
	if (strcmp(opt, "--appimage-offset") == 0)
		return printf("%lld\n", (long long)img->offset) < 0;
	if (strcmp(opt, "--appimage-signature") == 0)
		return print_section(img, ".sha256_sig");
	if (strcmp(opt, "--appimage-updateinformation") == 0 || strcmp(opt, "--appimage-updateinfo") == 0)
		return print_section(img, ".upd_info");
	if (strcmp(opt, "--appimage-portable-home") == 0)
		return portable_dir_create(img, "home");
	if (strcmp(opt, "--appimage-portable-config") == 0)
		return portable_dir_create(img, "config");
	return -1;
}

static int appimage_option(const struct image *img, char *argv0, int argc, char **argv)
{
	const char *opt = argv[1];
	int status = information_option(img, opt);
	if (status >= 0)
		return status;
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
	if (floor_check(img) != 0)
		return 1;
	return extract_and_run(img, argv0, argc - 2, argv + 2);
}

int main(int argc, char **argv)
{
	struct image img;
	const char *extract_and_run_env = getenv("APPIMAGE_EXTRACT_AND_RUN");
	char *target = getenv("TARGET_APPIMAGE");
	char *argv0 = target && *target ? target : argv[0];
	if (image_open(&img, target && *target ? target : "/proc/self/exe") != 0)
		return 1;
	if (argc > 1 && strncmp(argv[1], "--appimage-", 11) == 0)
		return appimage_option(&img, argv0, argc, argv);
	/* nothing reads the squashfs before image_check has passed it, the floor check included */
	if (image_check(&img) != 0 || floor_check(&img) != 0)
		return 1;
	if (extract_and_run_env && *extract_and_run_env)
		return extract_and_run(&img, argv0, argc - 1, argv + 1);
	return run_mounted(&img, argv0, argc - 1, argv + 1);
}

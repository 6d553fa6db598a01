/*
 * tea AppImage runtime: the AppImage type-2 contract this program implements.
 *
 * File layout (what AppImage tools such as libappimage and appimagetool expect):
 *   - The file starts with this static ELF executable. Bytes 8..10 of the ELF header hold the
 *     magic "AI\x02" (written after linking by release/runtime_build.py; the kernel ignores them).
 *   - The ELF has the sections .digest_md5 (16 bytes, appimagetool's MD5), .upd_info (1024, update
 *     information), .sha256_sig (1024, signature) and .sig_key (8192, signing key), zero-filled,
 *     for tools that fill them in later (release/signing.py fills the last two).
 *     Our own .sqfs_sha256 (32 bytes) holds the sha256 of the squashfs, written by the packager
 *     (release/appimage.py): the extract-and-run cache is keyed on it once it has been checked
 *     against the content (identity.c; zero: nothing is cached). The shared mount is keyed on the
 *     file's identity instead.
 *   - A squashfs image follows right after the ELF: its offset is
 *     e_shoff + e_shnum * e_shentsize (the section header table is the last part of the ELF).
 *
 * Behaviour at run time (argv[1] selects; anything else is passed to AppRun untouched):
 *   (no option)                  join this user's shared mount of the image, mounting it if there
 *                                is none (shared.c; it outlives the last run by
 *                                APPIMAGE_MOUNT_LINGER seconds, default 5), run AppRun with every
 *                                argument, exit with AppRun's status. APPIMAGE_SHARED_MOUNT=0: a
 *                                private mount at
 *                                $TMPDIR/.mount_<name>XXXXXX instead, unmounted before the runtime
 *                                exits. FUSE mounts go through fusermount3 or fusermount (FUSE 2),
 *                                or directly as root without either.
 *   --appimage-extract [pattern] extract (the paths matching the pattern, with type2-runtime's
 *                                fnmatch FNM_FILE_NAME | FNM_LEADING_DIR: a directory brings its
 *                                subtree) to ./squashfs-root
 *   --appimage-extract-and-run   extract to a per-user cache dir, run AppRun from there (also
 *                                when APPIMAGE_EXTRACT_AND_RUN is set to anything non-empty, and
 *                                automatically without FUSE)
 *   --appimage-offset            print the squashfs offset
 *   --appimage-mount             mount, print the mount point, keep it until SIGINT/SIGTERM
 *   --appimage-signature         print the .sha256_sig section (up to its first NUL)
 *   --appimage-updateinformation (or --appimage-updateinfo) print the .upd_info section
 *   --appimage-portable-home / --appimage-portable-config  create <file>.home / <file>.config
 *   --appimage-version, --appimage-help
 * TARGET_APPIMAGE, when set, names the AppImage to operate on instead of this file (AppImage
 * spec, for static runtimes). AppRun sees APPDIR (the mounted/extracted tree), APPIMAGE
 * (absolute path of the AppImage), ARGV0 (argv[0] as invoked, or TARGET_APPIMAGE) and OWD (the
 * working directory at start); HOME / XDG_CONFIG_HOME point at <file>.home / <file>.config when
 * those directories exist.
 */
#ifndef TEA_APPIMAGE_H
#define TEA_APPIMAGE_H

#include <limits.h>
#include <stdint.h>
#include <sys/types.h>

#define RUNTIME_VERSION "tea-appimage-runtime 1.0 (type 2)"

/* The running AppImage: where it is and where its squashfs starts. */
struct image {
	char path[PATH_MAX];
	char name[64];        /* file name, shortened and safe for a mount point / fsname */
	off_t offset;
	off_t size;           /* size of the whole file */
};

/* elf.c */
off_t elf_end_offset(int fd);
int elf_section(int fd, const char *name, off_t *offset, size_t *size);

/* image.c */
struct sqfs;
int image_open(struct image *img, const char *source);
int image_fs_init(const struct image *img, struct sqfs *fs, int *fd);
void image_fs_destroy(struct sqfs *fs);
int image_check(const struct image *img);

/* identity.c: the embedded squashfs digest (checked against the content before a cached tree is
 * shared under it) and the file identity that keys the shared mount; hex holds 65 bytes */
int image_digest(const struct image *img, char hex[65]);
int image_identity_key(const struct image *img, char hex[65]);
int image_digest_verified(const struct image *img, int dir_fd, const char *digest_hex);

/* sha256.c */
struct sha256 {
	uint32_t state[8];
	uint64_t length;
	unsigned char buffer[64];
	void (*compress)(uint32_t state[8], const unsigned char *data, size_t blocks);
};
void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t size);
void sha256_final(struct sha256 *h, unsigned char out[32]);

/* guard.c: 1 when squashfuse can act on this part of the image without reading out of bounds */
struct sqfs_inode;
int guard_tables(struct sqfs *fs);
int guard_metadata_ref(struct sqfs *fs, uint64_t start, uint64_t block, uint64_t offset);
int guard_inode_ref(struct sqfs *fs, uint64_t id);
int guard_directory(struct sqfs *fs, const struct sqfs_inode *dir);
int guard_file(struct sqfs *fs, struct sqfs_inode *file);
int guard_ids(const struct sqfs *fs, const struct sqfs_inode *inode);
int guard_symlink(const struct sqfs_inode *link);

/* directory.c: lookups and listings that never follow squashfuse's directory index; 0 or -1.
 * An entry's name buffer must hold NAME_BUFFER bytes (a name's size field allows 64 KiB). */
#define NAME_BUFFER 65537
#ifdef SQFS_DIR_H /* squashfuse's sqfs_dir and sqfs_dir_entry are typedefs of unnamed structs */
int dir_open_at(sqfs *fs, sqfs_inode *dir, sqfs_dir *listing, off_t offset);
int dir_lookup(sqfs *fs, sqfs_inode *dir, const char *name, size_t size, sqfs_dir_entry *entry, bool *found);
#endif
int image_lookup(struct sqfs *fs, const char *path, struct sqfs_inode *inode, _Bool *found);

/* xattrs.c: getxattr / listxattr answers (an errno, 0 on success), in place of squashfuse's */
int xattr_get(struct sqfs *fs, const struct sqfs_inode *inode, const char *name, char *buf, size_t cap,
	      size_t *size, char *name_buffer);
int xattr_list(struct sqfs *fs, const struct sqfs_inode *inode, char *buf, size_t cap, size_t *size,
	       char *name_buffer);

/* superblock.c: NULL when the superblock is sane for a squashfs of `available` bytes, else why not */
const char *superblock_problem(const unsigned char raw[96], uint64_t available);

/* A mount of the image, as a run sees it. */
struct mount {
	pid_t server;         /* the private mount's server process; 0 for a shared mount */
	int conn;             /* this run's connection to the server: closing it lets the server go */
	char dir[PATH_MAX];
	char reason[128];     /* why FUSE is unavailable, for the one-line fallback notice */
	char helper[PATH_MAX]; /* server side: the fusermount that mounted, "" when mounted directly */
	int watchdog;         /* server side: the pipe to its watchdog process, see mount.c */
	int point;            /* server side: the mount point, opened O_PATH before mounting */
};

/* The shared mount's socket, as its server holds it. */
struct listener {
	int fd;
	int dir_fd;           /* the per-user directory */
	char key[65];         /* image_identity_key: the image file's identity, hashed, in hex */
};

/* mount.c: 0 = mounted, 1 = no FUSE (m->reason says why), -1 = bad image or error */
int mount_start(const struct image *img, struct mount *m);
void mount_stop(struct mount *m);
void serve(const struct image *img, struct mount *m, int ready, int client,
	   struct listener *listener, int linger_ms) __attribute__((noreturn));
int server_ready(int fd, struct mount *m, const struct image *img);
int fuse_device_missing(struct mount *m);

/* shared.c: the per-user mount shared by runs of the same image (returns like mount_start) */
int shared_mount_enabled(void);
int shared_mount(const struct image *img, struct mount *m);
int shared_accept(struct listener *l, const char *mount_dir);
void shared_stop_listening(struct listener *l);

/* fusermount.c */
struct fuse_session;
void fuse_mount_options(const char *fsname, char *out, size_t cap);
int fusermount_find(char *out, size_t cap);
int fuse_attach(struct fuse_session *se, const char *options, struct mount *m);
void fuse_detach(const char *helper, const char *dir);

/* fs.c */
struct server_fs;
struct server_fs *fs_open(const struct image *img);
void fs_close(struct server_fs *sfs);
struct fuse_session *fs_session(struct server_fs *sfs, const char *options);

/* extract.c: into dest (created, or reused when it is a real directory); 0 or -1 (reported) */
int extract_tree(const struct image *img, const char *dest, const char *pattern);

/* run.c */
int run_apprun(const struct image *img, const char *appdir, char *argv0, int argc, char **argv);
void catch_signals(void);
int signal_received(void);
int wait_for_signal(const char *announcement);
void exit_like(int status) __attribute__((noreturn));

/* private_dir.c: directories only this user controls (owner, mode, no symlink) */
int private_dir_ok(const char *path);
int private_dir_make(const char *path);
int user_private_base(char *out, size_t cap);

/* cache.c */
int extract_and_run(const struct image *img, char *argv0, int argc, char **argv);
void remove_tree(const char *dir);

/* floor.c: 1 (after one line on stderr) when this system's glibc is older than the image needs;
 * only after image_check passed */
int floor_check(const struct image *img);

/* info.c: --appimage-signature, --appimage-updateinformation */
int print_section(const struct image *img, const char *name);

/* portable.c: <file>.home and <file>.config */
int portable_dir_create(const struct image *img, const char *suffix);
void portable_dirs_apply(const struct image *img);

/* pattern.c: which paths --appimage-extract PATTERN selects (all when pattern is NULL) */
int extract_pattern_matches(const char *pattern, const char *path);

/* main.c: print "appimage: <message>" on stderr as one line; $TMPDIR or /tmp; snprintf that
 * reports and returns -1 when the result does not fit. */
void report(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *temp_dir(void);
int path_printf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif

/*
 * The filesystem the FUSE server exposes: squashfuse's low-level operations, plus a read path
 * that answers straight from the AppImage file wherever a file's data is stored uncompressed.
 *
 * Why: the bundled model (several GB) is stored uncompressed. squashfuse would read each 128 KiB
 * block into a buffer, copy it into the reply and write that to /dev/fuse, after walking the
 * file's block list from the start of a metadata block on every request. Here each file read
 * gets a table of where its blocks lie in the AppImage, and a read of uncompressed blocks is
 * answered with an fd-backed buffer: libfuse splices those pages from the AppImage's page cache
 * into /dev/fuse, with no userspace copy. Compressed blocks, holes and the tail fragment take
 * squashfuse's path.
 *
 * squashfuse's caches are not thread-safe, so every call into it holds fs_lock; the spliced
 * reads need no lock, which is what lets several server threads serve the model in parallel.
 *
 * The image never changes, so the kernel is let cache all it can, and every round trip it can be
 * spared is spared (a cold `tea --version` sent ~350 requests, now ~130): a file's table serves
 * every open of it for the server's life; where the kernel can, it is told not to send opens
 * and opendirs at all (tea opens ~170 files to start), so it also keeps directory listings;
 * listings carry each entry's attributes (READDIRPLUS), so the lookups that follow need no
 * request; a small file's first read sends the kernel all of it; an image without xattrs says
 * so once instead of being asked at every exec.
 *
 * A hostile image (TARGET_APPIMAGE may name any file) gets guard.c's checks here too, as in
 * extract.c: a file's blocks and fragment when it is first read, a directory's listing when it is
 * listed or searched, an entry's inode reference before it is read, an inode's uid/gid indexes
 * before it is stat'ed, a symlink's size before it is read. Lookup and readdir are ours, walking
 * the entries without squashfuse's directory index (directory.c), with a name buffer as long as
 * squashfs can store (squashfuse's hold 256 bytes); so are getxattr and listxattr (xattrs.c:
 * squashfuse's overflow the heap). No operation is left to squashfuse's ll.c but forget and statfs.
 */
#include <errno.h>
#include <float.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <squashfuse/ll.h>

#include "appimage.h"

/* squashfuse's ll operations find their sqfs_ll as the session's userdata: it comes first. */
struct server_fs {
	sqfs_ll ll;
	struct fuse_session *session; /* to push file contents into the kernel's cache */
	off_t image_size;
	bool no_open; /* the kernel takes ENOSYS to an open as "never ask again, keep the pages" */
	bool no_opendir; /* and to an opendir likewise, caching listings */
};

/* A regular file that has been read or opened, kept for the server's life. Keyed by FUSE inode
 * number: squashfuse's 64-bit scheme derives it from the inode's place in the image, so a number
 * never comes to mean another file (forget recycles nothing). */
struct known_file {
	fuse_ino_t ino;
	struct known_file *next; /* in its bucket */
	sqfs_inode inode;
	/* Where data block i lies in the AppImage when it is stored verbatim, else -1; one entry
	 * more than the file has blocks, -1, standing for the tail fragment. NULL: squashfuse reads. */
	off_t *stored;
	bool pushed; /* a read has sent the kernel the rest of it (a small file) */
};

#define FILE_BUCKETS 4096
static struct known_file *known_files[FILE_BUCKETS];
static pthread_rwlock_t known_files_lock = PTHREAD_RWLOCK_INITIALIZER;

/* In libsquashfuse_ll (its stat.h is not installed): an inode's attributes as stat(2) gives them. */
sqfs_err sqfs_stat(sqfs *fs, sqfs_inode *inode, struct stat *st);

static pthread_mutex_t fs_lock = PTHREAD_MUTEX_INITIALIZER;
static char entry_name[NAME_BUFFER]; /* a directory entry's or xattr's name, under fs_lock */
static const double FOREVER = DBL_MAX; /* the image never changes: the kernel may cache all of it */

/* Where a data block lies in the AppImage if it is stored uncompressed, else -1. */
static off_t verbatim_at(const struct server_fs *sfs, const sqfs_blocklist *bl)
{
	bool compressed;
	uint32_t size;
	sqfs_data_header(bl->header, &compressed, &size);
	return compressed ? -1 : (off_t)(sfs->ll.fs.offset + bl->block);
}

/* Fills file->stored; on a metadata error the file just keeps squashfuse's read path. */
static void map_blocks(struct server_fs *sfs, struct known_file *file)
{
	sqfs *fs = &sfs->ll.fs;
	sqfs_blocklist bl;
	size_t count = sqfs_blocklist_count(fs, &file->inode);
	if (count == 0 || !(file->stored = malloc((count + 1) * sizeof *file->stored)))
		return;
	sqfs_blocklist_init(fs, &file->inode, &bl);
	for (size_t i = 0; i < count; i++) {
		if (sqfs_blocklist_next(&bl) != SQFS_OK) {
			free(file->stored);
			file->stored = NULL;
			return;
		}
		file->stored[i] = verbatim_at(sfs, &bl);
	}
	file->stored[count] = -1;
}

/* Where [off, off + *size) lies in the AppImage when all of it is stored verbatim (*size is
 * clipped at the end of the file); -1 when squashfuse has to read it. A file's blocks lie one
 * after the other, so verbatim blocks in a row are one range of the AppImage. */
static off_t verbatim_range(const struct known_file *file, uint32_t block_size, off_t off,
			    size_t *size)
{
	uint64_t file_size = file->inode.xtra.reg.file_size;
	if (!file->stored || off < 0 || (uint64_t)off >= file_size || *size == 0)
		return -1;
	if (*size > file_size - (uint64_t)off)
		*size = (size_t)(file_size - (uint64_t)off);
	uint64_t first = (uint64_t)off / block_size;
	uint64_t last = ((uint64_t)off + *size - 1) / block_size; /* at most the fragment's entry */
	for (uint64_t i = first; i <= last; i++)
		if (file->stored[i] < 0)
			return -1;
	return file->stored[first] + (off_t)((uint64_t)off % block_size);
}

static struct known_file **bucket_of(fuse_ino_t ino)
{
	return &known_files[(ino * 0x9E3779B97F4A7C15u) >> 52 & (FILE_BUCKETS - 1)];
}

/* ino's entry in its bucket, or NULL; the caller holds known_files_lock. */
static struct known_file *in_bucket(fuse_ino_t ino)
{
	struct known_file *file = *bucket_of(ino);
	while (file && file->ino != ino)
		file = file->next;
	return file;
}

static struct known_file *find_known(fuse_ino_t ino)
{
	pthread_rwlock_rdlock(&known_files_lock);
	struct known_file *file = in_bucket(ino);
	pthread_rwlock_unlock(&known_files_lock);
	return file;
}

/* ino as a regular file with its block table, made on first use; NULL with *err when it cannot
 * be read (not kept: a bad file is checked again, and answers EIO again). */
static struct known_file *file_of(struct server_fs *sfs, fuse_ino_t ino, int *err)
{
	struct known_file *file = find_known(ino), *raced;
	if (file)
		return file;
	if (!(file = calloc(1, sizeof *file))) {
		*err = ENOMEM;
		return NULL;
	}
	pthread_mutex_lock(&fs_lock);
	*err = 0;
	if (sqfs_ll_inode(&sfs->ll, &file->inode, ino) != SQFS_OK)
		*err = ENOENT;
	else if (!S_ISREG(file->inode.base.mode))
		*err = EISDIR;
	else if (!guard_file(&sfs->ll.fs, &file->inode))
		*err = EIO;
	else
		map_blocks(sfs, file);
	pthread_mutex_unlock(&fs_lock);
	if (*err) {
		free(file);
		return NULL;
	}
	file->ino = ino;
	pthread_rwlock_wrlock(&known_files_lock);
	raced = in_bucket(ino);
	if (!raced) {
		file->next = *bucket_of(ino);
		*bucket_of(ino) = file;
	}
	pthread_rwlock_unlock(&known_files_lock);
	if (raced) { /* another thread made it first */
		free(file->stored);
		free(file);
	}
	return raced ? raced : file;
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	int err = 0;
	if (fi->flags & (O_WRONLY | O_RDWR))
		err = EROFS;
	else if (sfs->no_open)
		err = ENOSYS; /* the first open: the kernel sends no more, and keeps the pages */
	else
		file_of(sfs, ino, &err);
	if (err) {
		fuse_reply_err(req, err);
		return;
	}
	fi->keep_cache = 1; /* the image never changes: keep its pages across opens */
	fuse_reply_open(req, fi);
}

/* [off, off + size) of file, clipped at its end: where its bytes lie in the AppImage (*data is
 * fd-backed, *decoded NULL), or decoded by squashfuse into *decoded (the caller frees it). An
 * errno when it cannot be read. */
static int file_bytes(struct server_fs *sfs, struct known_file *file, off_t off, size_t size,
		      struct fuse_bufvec *data, char **decoded)
{
	off_t at = verbatim_range(file, sfs->ll.fs.sb.block_size, off, &size);
	*decoded = NULL;
	/* Only ever splice from inside the AppImage: a corrupt block table must not become a short
	 * read, which FUSE would take for the end of the file. squashfuse says EIO instead. */
	if (at >= 0 && at <= sfs->image_size - (off_t)size) {
		*data = (struct fuse_bufvec)FUSE_BUFVEC_INIT(size);
		data->buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
		data->buf[0].fd = sfs->ll.fs.fd;
		data->buf[0].pos = at;
		return 0;
	}
	/* Compressed data, holes and fragments: squashfuse decodes them into a buffer. */
	sqfs_off_t got = (sqfs_off_t)size;
	if (!(*decoded = malloc(size ? size : 1)))
		return ENOMEM;
	pthread_mutex_lock(&fs_lock);
	sqfs_err err = sqfs_read_range(&sfs->ll.fs, &file->inode, off, &got, *decoded);
	pthread_mutex_unlock(&fs_lock);
	if (err != SQFS_OK) {
		free(*decoded);
		*decoded = NULL;
		return EIO;
	}
	*data = (struct fuse_bufvec)FUSE_BUFVEC_INIT((size_t)got);
	data->buf[0].mem = *decoded;
	return 0;
}

/* Files up to this size are sent to the kernel whole at their first read. Why: a start reads
 * most of each file it touches (libpython, the PYZ archive, extension modules) in 2 to 75
 * readahead-sized requests, each a round trip to this server; pushed (FUSE_NOTIFY_STORE) they
 * are page-cache hits. Larger files (the model) are left to the kernel's readahead. */
#define PUSH_LIMIT (8u << 20)
#define PUSH_CHUNK (1u << 20) /* a pipe of this size splices it (pipe-max-size's default) */
/* One push at a time. A push waits for each page it stores to be unlocked, and the kernel keeps
 * pages locked while their read waits for this server: were every server thread pushing, none
 * would be left to answer those reads (measured: 64 concurrent first readers hung the mount). A
 * file whose first read comes during another push is pushed at a later read. */
static pthread_mutex_t push_lock = PTHREAD_MUTEX_INITIALIZER;

/* Sends the kernel [from, to) of file, a chunk at a time; a failure (the kernel has dropped the
 * inode meanwhile, no memory) just leaves the rest to ordinary reads. */
static void push(struct server_fs *sfs, struct known_file *file, fuse_ino_t ino, off_t from, off_t to)
{
	for (off_t off = from; off < to; off += PUSH_CHUNK) {
		struct fuse_bufvec data;
		char *decoded;
		size_t size = to - off < PUSH_CHUNK ? (size_t)(to - off) : PUSH_CHUNK;
		if (file_bytes(sfs, file, off, size, &data, &decoded) != 0)
			return;
		int err = fuse_lowlevel_notify_store(sfs->session, ino, off, &data, 0);
		free(decoded);
		if (err)
			return;
	}
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		    struct fuse_file_info *fi)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	struct fuse_bufvec data;
	char *decoded;
	int err;
	struct known_file *file = file_of(sfs, ino, &err);
	(void)fi;
	if (file)
		err = file_bytes(sfs, file, off, size, &data, &decoded);
	if (!file || err) {
		fuse_reply_err(req, err);
		return;
	}
	fuse_reply_data(req, &data, 0);
	free(decoded);
	off_t file_size = (off_t)file->inode.xtra.reg.file_size, end = off + (off_t)fuse_buf_size(&data);
	if (file_size > PUSH_LIMIT || __atomic_load_n(&file->pushed, __ATOMIC_RELAXED) ||
	    pthread_mutex_trylock(&push_lock) != 0)
		return;
	if (!__atomic_test_and_set(&file->pushed, __ATOMIC_RELAXED)) {
		push(sfs, file, ino, end, file_size); /* after the reply: the reader goes on meanwhile */
		push(sfs, file, ino, 0, off);
	}
	pthread_mutex_unlock(&push_lock);
}

/* Every other operation is squashfuse's own, one at a time. */
#define LOCKED(call)                                                                              \
	do {                                                                                      \
		pthread_mutex_lock(&fs_lock);                                                     \
		call;                                                                             \
		pthread_mutex_unlock(&fs_lock);                                                   \
	} while (0)

/* An inode's attributes, as stat(2) gives them; an errno when they cannot be read. */
static int inode_stat(sqfs *fs, sqfs_inode *inode, struct stat *st)
{
	return guard_ids(fs, inode) && sqfs_stat(fs, inode, st) == SQFS_OK ? 0 : EIO;
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	sqfs_inode inode;
	struct stat st;
	int err = ENOENT;
	(void)fi;
	pthread_mutex_lock(&fs_lock);
	if (sqfs_ll_inode(&sfs->ll, &inode, ino) == SQFS_OK)
		err = inode_stat(&sfs->ll.fs, &inode, &st);
	pthread_mutex_unlock(&fs_lock);
	st.st_ino = ino;
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_attr(req, &st, FOREVER);
}

/* The directory inode of ino, if its listing can be read; else the errno to answer. */
static int directory_of(struct server_fs *sfs, fuse_ino_t ino, sqfs_inode *dir)
{
	if (sqfs_ll_inode(&sfs->ll, dir, ino) != SQFS_OK)
		return ENOENT;
	if (!S_ISDIR(dir->base.mode))
		return ENOTDIR;
	return guard_directory(&sfs->ll.fs, dir) ? 0 : EIO;
}

/* What the kernel is told of a directory entry (a lookup's answer), or the errno. */
static int entry_param(struct server_fs *sfs, sqfs_dir_entry *entry, struct fuse_entry_param *out)
{
	sqfs *fs = &sfs->ll.fs;
	sqfs_inode inode;
	if (!guard_inode_ref(fs, sqfs_dentry_inode(entry)) ||
	    sqfs_inode_get(fs, &inode, sqfs_dentry_inode(entry)) != SQFS_OK ||
	    inode_stat(fs, &inode, &out->attr) != 0)
		return EIO;
	out->ino = sfs->ll.ino_register(&sfs->ll, entry);
	out->attr.st_ino = out->ino;
	out->attr_timeout = out->entry_timeout = FOREVER;
	return out->ino == SQFS_FUSE_INODE_NONE ? ENOMEM : 0;
}

/* squashfuse's lookup, guarded: fills out for name in parent, or returns the errno. */
static int lookup_entry(struct server_fs *sfs, fuse_ino_t parent, const char *name,
			struct fuse_entry_param *out)
{
	sqfs_inode dir;
	sqfs_dir_entry entry;
	bool found = false;
	int err = directory_of(sfs, parent, &dir);
	if (err)
		return err;
	sqfs_dentry_init(&entry, entry_name);
	if (dir_lookup(&sfs->ll.fs, &dir, name, strlen(name), &entry, &found) != 0)
		return EIO;
	return found ? entry_param(sfs, &entry, out) : ENOENT;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
	struct fuse_entry_param entry = {0};
	pthread_mutex_lock(&fs_lock);
	int err = lookup_entry(fuse_req_userdata(req), parent, name, &entry);
	pthread_mutex_unlock(&fs_lock);
	if (err == ENOENT) { /* the image never changes: the kernel may remember a name's absence */
		entry.ino = 0;
		entry.entry_timeout = FOREVER;
		fuse_reply_entry(req, &entry);
	} else if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_entry(req, &entry);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, unsigned long nlookup)
{
	LOCKED(sqfs_ll_op_forget(req, ino, nlookup));
}

/* Where the kernel can do without opendirs, the first one says so; it then also caches every
 * listing (FOPEN_CACHE_DIR), so a directory is listed once per mount. Elsewhere an opendir only
 * checks the directory: each listing request finds it again by ino. */
static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	sqfs_inode dir;
	int err = ENOSYS;
	if (!sfs->no_opendir) {
		pthread_mutex_lock(&fs_lock);
		err = directory_of(sfs, ino, &dir);
		pthread_mutex_unlock(&fs_lock);
	}
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_open(req, fi);
}

/* Fills buf with the entries of dir from off on, as many as fit; the bytes used, or -errno.
 * plus: each with its attributes too (READDIRPLUS), as a lookup would answer. */
static ssize_t list_entries(fuse_req_t req, fuse_ino_t ino, char *buf, size_t size, off_t off,
			    bool plus)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	sqfs *fs = &sfs->ll.fs;
	struct fuse_entry_param param = {0};
	sqfs_inode dir;
	sqfs_dir listing;
	sqfs_dir_entry entry;
	sqfs_err err = SQFS_OK;
	size_t used = 0, need;
	int bad = directory_of(sfs, ino, &dir);
	if (bad)
		return -bad;
	if (dir_open_at(fs, &dir, &listing, off) != 0)
		return -EINVAL;
	sqfs_dentry_init(&entry, entry_name);
	while (sqfs_dir_next(fs, &listing, &entry, &err)) {
		entry_name[sqfs_dentry_name_size(&entry)] = '\0';
		off_t next = sqfs_dentry_next_offset(&entry);
		if (plus) {
			int failed = entry_param(sfs, &entry, &param);
			if (failed)
				return -failed;
			need = fuse_add_direntry_plus(req, buf + used, size - used, entry_name, &param, next);
		} else {
			param.attr.st_ino = sfs->ll.ino_fuse_num(&sfs->ll, &entry);
			param.attr.st_mode = sqfs_dentry_mode(&entry);
			need = fuse_add_direntry(req, buf + used, size - used, entry_name, &param.attr, next);
		}
		if (need > size - used)
			break;
		used += need;
	}
	return err == SQFS_OK ? (ssize_t)used : -EIO;
}

static void reply_listing(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
	char *buf = malloc(size ? size : 1);
	if (!buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs_lock);
	ssize_t used = list_entries(req, ino, buf, size, off, plus);
	pthread_mutex_unlock(&fs_lock);
	if (used < 0)
		fuse_reply_err(req, (int)-used);
	else
		fuse_reply_buf(req, buf, (size_t)used);
	free(buf);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
		       struct fuse_file_info *fi)
{
	(void)fi;
	reply_listing(req, ino, size, off, false);
}

/* A listing with every entry's attributes: the kernel caches them, so the lookups that follow a
 * listing (a start lists usr/bin/_internal and stats ~45 of its entries) need no round trip. */
static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
			   struct fuse_file_info *fi)
{
	(void)fi;
	reply_listing(req, ino, size, off, true);
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	sqfs_inode inode;
	char target[PATH_MAX];
	size_t size = sizeof target;
	int err = 0;
	pthread_mutex_lock(&fs_lock);
	if (sqfs_ll_inode(&sfs->ll, &inode, ino) != SQFS_OK)
		err = ENOENT;
	else if (!S_ISLNK(inode.base.mode))
		err = EINVAL;
	else if (!guard_symlink(&inode) || sqfs_readlink(&sfs->ll.fs, &inode, target, &size) != SQFS_OK)
		err = EIO;
	pthread_mutex_unlock(&fs_lock);
	if (err)
		fuse_reply_err(req, err);
	else
		fuse_reply_readlink(req, target);
}

/* An image without xattrs (ours: mksquashfs -no-xattrs) answers ENOSYS, which the kernel takes
 * as "never ask again": else every exec from the mount asks for security.capability. */
static bool without_xattrs(fuse_req_t req)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	if (sfs->ll.fs.sb.xattr_id_table_start != (uint64_t)SQUASHFS_INVALID_BLK)
		return false;
	fuse_reply_err(req, ENOSYS);
	return true;
}

/* listxattr (name NULL) or getxattr of name: size 0 asks for the size only. */
static void reply_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	struct server_fs *sfs = fuse_req_userdata(req);
	sqfs_inode inode;
	size_t real = 0;
	char *buf = size ? malloc(size) : NULL;
	int err = ENOENT;
	if (size && !buf) {
		fuse_reply_err(req, ENOMEM);
		return;
	}
	pthread_mutex_lock(&fs_lock);
	if (sqfs_ll_inode(&sfs->ll, &inode, ino) == SQFS_OK)
		err = name ? xattr_get(&sfs->ll.fs, &inode, name, buf, size, &real, entry_name)
			   : xattr_list(&sfs->ll.fs, &inode, buf, size, &real, entry_name);
	pthread_mutex_unlock(&fs_lock);
	if (err)
		fuse_reply_err(req, err);
	else if (size == 0)
		fuse_reply_xattr(req, real);
	else
		fuse_reply_buf(req, buf, real);
	free(buf);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
	if (!without_xattrs(req))
		reply_xattr(req, ino, NULL, size);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
	if (!without_xattrs(req))
		reply_xattr(req, ino, name, size);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
	LOCKED(stfs_ll_op_statfs(req, ino));
}

/* Splice replies need the capability asked for; symlinks never change, so the kernel may cache
 * them; where the kernel can do without opens, it is told so at the first one. */
static void op_init(void *userdata, struct fuse_conn_info *conn)
{
	struct server_fs *sfs = userdata;
	conn->want |= conn->capable & (FUSE_CAP_SPLICE_WRITE | FUSE_CAP_CACHE_SYMLINKS |
				       FUSE_CAP_NO_OPEN_SUPPORT | FUSE_CAP_NO_OPENDIR_SUPPORT);
	sfs->no_open = conn->want & FUSE_CAP_NO_OPEN_SUPPORT;
	sfs->no_opendir = conn->want & FUSE_CAP_NO_OPENDIR_SUPPORT;
	conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO; /* every listing with attributes, not only its start */
}

static const struct fuse_lowlevel_ops operations = {
	.init = op_init, .getattr = op_getattr, .lookup = op_lookup, .forget = op_forget,
	.opendir = op_opendir, .readdir = op_readdir, .readdirplus = op_readdirplus,
	.open = op_open, .read = op_read, .readlink = op_readlink,
	.listxattr = op_listxattr, .getxattr = op_getxattr, .statfs = op_statfs,
};

/* The image as squashfuse sees it; NULL when it cannot be read. */
struct server_fs *fs_open(const struct image *img)
{
	int fd = -1;
	struct server_fs *sfs = calloc(1, sizeof *sfs);
	if (sfs && image_fs_init(img, &sfs->ll.fs, &fd) == SQFS_OK && sqfs_ll_init(&sfs->ll) == SQFS_OK) {
		sfs->image_size = img->size;
		return sfs;
	}
	if (fd >= 0)
		close(fd);
	free(sfs);
	return NULL;
}

/* Frees sfs and every file table made for it (the fuzz harness serves one image after another). */
void fs_close(struct server_fs *sfs)
{
	for (size_t i = 0; i < FILE_BUCKETS; i++)
		for (struct known_file *file = known_files[i], *next; file; file = next) {
			next = file->next;
			free(file->stored);
			free(file);
		}
	memset(known_files, 0, sizeof known_files);
	sqfs_ll_destroy(&sfs->ll);
	sqfs_table_destroy(&sfs->ll.fs.xattr_table); /* sqfs_destroy forgets it */
	close(sfs->ll.fs.fd);
	free(sfs);
}

/* A FUSE session serving sfs; options is libfuse's -o string. */
struct fuse_session *fs_session(struct server_fs *sfs, const char *options)
{
	char *argv[] = {"appimage", "-o", (char *)options, NULL};
	struct fuse_args args = FUSE_ARGS_INIT(3, argv);
	return sfs->session = fuse_session_new(&args, &operations, sizeof operations, sfs);
}

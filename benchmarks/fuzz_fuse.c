/*
 * libFuzzer target for the FUSE server's operations (benchmarks/fuzz_runtime.py --harness fuse).
 *
 * No kernel and no mount: the server's own session (fs.c's fs_open and fs_session, libfuse's
 * dispatch) is handed requests as the kernel would send them, through
 * fuse_session_process_buf, and writes its replies into a memfd (libfuse takes "/dev/fd/N" as
 * an already-open FUSE device). After image_check, as before a real mount, the harness walks the
 * image the way the kernel and its users would: every directory listed with READDIR and
 * READDIRPLUS in small pieces (so each continuation offset is used, plus one that is not an
 * entry's), every entry looked up (and absent names beside it), stat'ed, its xattrs listed and
 * read (present names, and absent ones sharing a present one's prefix), files opened and read
 * at their start, middle and end, symlinks read. Up to MAX_REQUESTS requests per input.
 * FUZZ_FUSE_TRACE=1 prints each request's answer.
 */
#include <linux/fuse.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include <squashfuse/ll.h> /* libfuse 3's lowlevel API, as fs.c has it */

#include "fuzz_image.h"

#define MAX_REQUESTS 300
#define MAX_DIRS 32
#define LIST_SIZE 1024 /* a few entries per reply: continuations get used */
#define REPLY_MAX (4u << 20)

struct harness {
	struct fuse_session *se;
	int replies; /* the memfd the session writes to */
	uint64_t unique;
	int budget;
	char *reply; /* the last reply's payload (REPLY_MAX bytes) */
	int32_t error;
	size_t size;
	uint64_t dirs[MAX_DIRS];
	size_t ndirs;
};

/* Sends one request (header + body parts) and picks its reply out of what the session wrote
 * (notifications before it are skipped). false when the budget is spent or no reply came. */
static bool request(struct harness *h, uint32_t opcode, uint64_t node, const void *arg, size_t arg_size,
		    const char *name, const char *name2)
{
	static char in[8192 + 2 * 4096];
	struct fuse_in_header header = {.opcode = opcode, .unique = ++h->unique, .nodeid = node};
	size_t len = sizeof header;
	if (h->budget-- <= 0)
		return false;
	if (arg_size)
		memcpy(in + len, arg, arg_size);
	len += arg_size;
	for (const char *part = name; part; part = part == name ? name2 : NULL) {
		size_t n = strlen(part) + 1;
		if (len + n > sizeof in)
			return false;
		memcpy(in + len, part, n);
		len += n;
	}
	header.len = (uint32_t)len;
	memcpy(in, &header, sizeof header);
	struct fuse_buf buf = {.size = len, .mem = in};
	ftruncate(h->replies, 0);
	lseek(h->replies, 0, SEEK_SET);
	fuse_session_process_buf(h->se, &buf);
	off_t written = lseek(h->replies, 0, SEEK_CUR);
	for (off_t at = 0; at + (off_t)sizeof(struct fuse_out_header) <= written;) {
		struct fuse_out_header out;
		if (pread(h->replies, &out, sizeof out, at) != sizeof out || out.len < sizeof out)
			return false;
		if (out.unique == header.unique) {
			h->error = out.error;
			if (getenv("FUZZ_FUSE_TRACE")) /* what each request got, to replay a finding */
				printf("op %u node %llu %s: error %d, %u bytes\n", opcode, (unsigned long long)node,
				       name ? name : "", out.error, out.len);
			h->size = out.len - sizeof out < REPLY_MAX ? out.len - sizeof out : REPLY_MAX;
			return pread(h->replies, h->reply, h->size, at + (off_t)sizeof out) == (ssize_t)h->size;
		}
		at += out.len;
	}
	return false;
}

static bool ok(struct harness *h, uint32_t opcode, uint64_t node, const void *arg, size_t arg_size,
	       const char *name)
{
	return request(h, opcode, node, arg, arg_size, name, NULL) && h->error == 0;
}

static void read_file(struct harness *h, uint64_t node, uint64_t size)
{
	struct fuse_open_in open_in = {.flags = O_RDONLY};
	ok(h, FUSE_OPEN, node, &open_in, sizeof open_in, NULL);
	uint64_t offsets[] = {0, size / 2, size > 4096 ? size - 4096 : 0, size};
	for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
		struct fuse_read_in read_in = {.offset = offsets[i], .size = 128 << 10};
		ok(h, FUSE_READ, node, &read_in, sizeof read_in, NULL);
	}
}

/* Every xattr name listxattr gives, and absent names that share a prefix with one. */
static void xattrs(struct harness *h, uint64_t node)
{
	char names[4096], absent[300];
	struct fuse_getxattr_in sizing = {.size = 0}, full = {.size = sizeof names};
	ok(h, FUSE_LISTXATTR, node, &sizing, sizeof sizing, NULL);
	if (!ok(h, FUSE_LISTXATTR, node, &full, sizeof full, NULL))
		return;
	size_t got = h->size < sizeof names ? h->size : sizeof names - 1;
	memcpy(names, h->reply, got);
	names[got] = '\0';
	for (size_t at = 0; at < got; at += strlen(names + at) + 1) {
		const char *name = names + at;
		size_t n = strlen(name);
		request(h, FUSE_GETXATTR, node, &sizing, sizeof sizing, name, NULL);
		request(h, FUSE_GETXATTR, node, &full, sizeof full, name, NULL);
		if (n == 0 || n + 2 > sizeof absent)
			continue;
		memcpy(absent, name, n - 1); /* one byte short: same prefix, shorter */
		absent[n - 1] = '\0';
		request(h, FUSE_GETXATTR, node, &full, sizeof full, absent, NULL);
		snprintf(absent, sizeof absent, "%sx", name); /* one byte longer */
		request(h, FUSE_GETXATTR, node, &full, sizeof full, absent, NULL);
	}
	request(h, FUSE_GETXATTR, node, &full, sizeof full, "user.a", NULL);
	request(h, FUSE_GETXATTR, node, &full, sizeof full, "security.capability", NULL);
}

/* Looks name up in dir and works on what it finds. */
static void visit(struct harness *h, uint64_t dir, const char *name)
{
	char absent[4200];
	snprintf(absent, sizeof absent, "%s~", name);
	request(h, FUSE_LOOKUP, dir, NULL, 0, absent, NULL);
	if (!ok(h, FUSE_LOOKUP, dir, NULL, 0, name) || h->size < sizeof(struct fuse_entry_out))
		return;
	struct fuse_entry_out entry;
	memcpy(&entry, h->reply, sizeof entry);
	if (entry.nodeid == 0)
		return; /* a negative entry: absent */
	struct fuse_getattr_in getattr_in = {0};
	ok(h, FUSE_GETATTR, entry.nodeid, &getattr_in, sizeof getattr_in, NULL);
	xattrs(h, entry.nodeid);
	if (S_ISREG(entry.attr.mode))
		read_file(h, entry.nodeid, entry.attr.size);
	else if (S_ISLNK(entry.attr.mode))
		request(h, FUSE_READLINK, entry.nodeid, NULL, 0, NULL, NULL);
	else if (S_ISDIR(entry.attr.mode) && h->ndirs < MAX_DIRS)
		h->dirs[h->ndirs++] = entry.nodeid;
	struct fuse_forget_in forget = {.nlookup = 1};
	request(h, FUSE_FORGET, entry.nodeid, &forget, sizeof forget, NULL, NULL); /* no reply */
}

/* Lists dir in small pieces with opcode (READDIR or READDIRPLUS); visits each name once (plain). */
static void list(struct harness *h, uint64_t dir, uint32_t opcode)
{
	struct fuse_read_in read_in = {.size = LIST_SIZE};
	char name[4200];
	bool plus = opcode == FUSE_READDIRPLUS;
	while (ok(h, opcode, dir, &read_in, sizeof read_in, NULL) && h->size > 0) {
		char *reply = malloc(h->size);
		size_t size = h->size, at = 0;
		memcpy(reply, h->reply, size);
		uint64_t next = read_in.offset;
		while (at + (plus ? sizeof(struct fuse_direntplus) : sizeof(struct fuse_dirent)) <= size) {
			struct fuse_dirent *d = (struct fuse_dirent *)(reply + at + (plus ? sizeof(struct fuse_entry_out) : 0));
			size_t namelen = d->namelen < sizeof name - 1 ? d->namelen : sizeof name - 1;
			memcpy(name, d->name, namelen);
			name[namelen] = '\0';
			next = d->off;
			if (!plus)
				visit(h, dir, name);
			at += (plus ? sizeof(struct fuse_entry_out) : 0) + FUSE_DIRENT_SIZE(d);
		}
		free(reply);
		if (next == read_in.offset)
			break;
		if (read_in.offset == 0) { /* once: an offset that is not an entry's */
			struct fuse_read_in astray = {.offset = next + 1, .size = LIST_SIZE};
			request(h, opcode, dir, &astray, sizeof astray, NULL, NULL);
		}
		read_in.offset = next;
	}
}

static void walk(struct harness *h)
{
	struct fuse_init_in init = {.major = FUSE_KERNEL_VERSION, .minor = FUSE_KERNEL_MINOR_VERSION,
				    .max_readahead = 128 << 10,
				    .flags = FUSE_ASYNC_READ | FUSE_DO_READDIRPLUS | FUSE_CACHE_SYMLINKS |
					     FUSE_NO_OPEN_SUPPORT | FUSE_NO_OPENDIR_SUPPORT | FUSE_MAX_PAGES};
	struct fuse_getattr_in getattr_in = {0};
	if (!ok(h, FUSE_INIT, 0, &init, sizeof init, NULL))
		return;
	ok(h, FUSE_STATFS, FUSE_ROOT_ID, NULL, 0, NULL);
	ok(h, FUSE_GETATTR, FUSE_ROOT_ID, &getattr_in, sizeof getattr_in, NULL);
	xattrs(h, FUSE_ROOT_ID);
	h->dirs[h->ndirs++] = FUSE_ROOT_ID;
	for (size_t i = 0; i < h->ndirs; i++) {
		request(h, FUSE_LOOKUP, h->dirs[i], NULL, 0, "zzzz-absent", NULL);
		request(h, FUSE_LOOKUP, h->dirs[i], NULL, 0, "a", NULL);
		list(h, h->dirs[i], FUSE_READDIRPLUS);
		list(h, h->dirs[i], FUSE_READDIR);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static char reply[REPLY_MAX];
	struct image img;
	int fd = fuzz_image_open(data, size, &img);
	struct server_fs *sfs = image_check(&img) == 0 ? fs_open(&img) : NULL;
	if (sfs) {
		struct harness h = {.replies = memfd_create("replies", MFD_CLOEXEC), .budget = MAX_REQUESTS,
				    .reply = reply};
		char device[32];
		snprintf(device, sizeof device, "/dev/fd/%d", h.replies);
		h.se = fs_session(sfs, "ro,nodev,nosuid,fsname=fuzz,subtype=appimage");
		if (!h.se || fuse_session_mount(h.se, device) != 0)
			abort();
		walk(&h);
		fuse_session_destroy(h.se); /* closes the replies' memfd */
		fs_close(sfs);
	}
	fuzz_image_close(fd);
	return 0;
}

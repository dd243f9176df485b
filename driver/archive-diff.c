/* gr_archive_diff: the tar of one layer directory, as moby v20.10's
   archive.TarWithOptions writes it for the aufs driver (ExcludePatterns
   `.wh..wh.*` but `.wh..wh..opq`) and for overlay2 (the overlay whiteout
   converter).

   What carries over from moby (pkg/archive addTarFile, FileInfoHeader,
   overlayWhiteoutConverter):
   - entries in filepath.Walk order: each directory's names sorted bytewise,
     depth first; the layer root itself is not an entry;
   - names relative, no leading "./", directories end in '/';
   - a non-directory with more than one link whose inode was seen before
     is a hard link to the first name seen, with size 0;
   - mode = permission bits plus setuid/setgid/sticky; uid/gid numeric, no
     user or group names; mtime truncated to the second; no atime/ctime;
   - the only xattr is security.capability (a v3 capability is rewritten
     as v2, as moby does);
   - sockets are left out;
   - pax extended headers only where ustar cannot hold a field (long or
     non-ASCII names, big ids or sizes, xattrs).
   Whiteouts: in the overlay format a char device 0/0 `x` becomes an empty
   regular file `.wh.x` (mode 0600, its owner and mtime), and a directory
   with trusted.overlay.opaque=y is followed by `<dir>/.wh..wh..opq`
   (the directory's permission bits and owner, mtime 0).  In the aufs
   format `.wh.` files go out as they are and the aufs internals at the
   layer root (`.wh..wh.aufs`, `.wh..wh.orph`, `.wh..wh.plnk` and what is
   below them) are left out.

   The ustar mode field carries the file type bits as Go writes them
   (040755), but for the overlay whiteout entries (permission bits only).
   Known differences from moby's bytes (the entries read back the same):
   libarchive formats numeric fields its own way ("000644 " vs Go's
   "0000644"); libarchive starts pax records earlier for big uids/gids
   (2^18, Go 2^21) and mtimes past 2038, and marks non-UTF-8 names with
   hdrcharset=BINARY; an overlay whiteout that shares its inode with an
   earlier one is a plain `.wh.` file (moby leaves the first whiteout's
   original name in its linkname field).  No uid/gid remapping (moby maps
   with the daemon's userns-remap maps).  Entries that vanish during the
   walk are skipped; any other error fails the diff, and then no end
   blocks are written.  */
#include "config.h"

#include "archive-internal.h"
#include "archive.h"
#include "fsutil.h"
#include "whiteout.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <locale.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define DIFF_COPY_SIZE (256 * 1024)
#define CAP_XATTR "security.capability"

static int
cmp_names (const void *a, const void *b)
{
  return strcmp (*(char *const *)a, *(char *const *)b);
}

void
gr_archive_free_names (char **names, size_t n)
{
  for (size_t i = 0; i < n; i++)
    free (names[i]);
  free (names);
}

int
gr_archive_read_names (char ***names, size_t *n, int dirfd, gr_error_t *err)
{
  cleanup_dir DIR *d = gr_dir_open_at (dirfd, ".", err);
  if (d == NULL)
    return -1;
  char **v = NULL;
  size_t len = 0, cap = 0;
  for (;;)
    {
      errno = 0;
      struct dirent *de = readdir (d);
      if (de == NULL)
        {
          if (errno)
            {
              int saved = errno;
              gr_archive_free_names (v, len);
              return gr_make_error (err, saved, "readdir");
            }
          break;
        }
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      if (len == cap)
        {
          cap = cap ? cap * 2 : 32;
          v = xrealloc (v, cap * sizeof (*v));
        }
      v[len++] = xstrdup (de->d_name);
    }
  if (len > 1)
    qsort (v, len, sizeof (*v), cmp_names);
  *names = v;
  *n = len;
  return 0;
}

void
gr_archive_walk_leave (int *parentfd, unsigned depth)
{
  if (depth >= GR_WALK_FD_DEPTH && *parentfd >= 0)
    {
      close (*parentfd);
      *parentfd = -1;
    }
}

int
gr_archive_walk_back (int *parentfd, int childfd, const struct stat *parent_st, gr_error_t *err)
{
  if (*parentfd >= 0)
    return 0;
  int fd = openat (childfd, "..", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return gr_make_error (err, errno, "reopen parent directory");
  struct stat st;
  if (fstat (fd, &st) < 0 || st.st_dev != parent_st->st_dev || st.st_ino != parent_st->st_ino)
    {
      close (fd);
      return gr_make_error (err, ESTALE, "a directory moved during the walk");
    }
  *parentfd = fd;
  return 0;
}

/* Inodes with more than one link already written, keyed by (dev, ino).  */
struct link_ent
{
  dev_t dev;
  ino_t ino;
  char *name;
};

struct link_table
{
  struct link_ent *v;
  size_t cap; /* power of two */
  size_t len;
};

static size_t
link_hash (dev_t dev, ino_t ino)
{
  uint64_t h = (uint64_t)ino * 0x9e3779b97f4a7c15ULL ^ (uint64_t)dev * 0xc2b2ae3d27d4eb4fULL;
  return (size_t)(h ^ (h >> 29));
}

/* The first name seen for ST's inode, or NULL after recording NAME.  */
static const char *
link_seen (struct link_table *t, const struct stat *st, const char *name)
{
  if (t->len * 2 >= t->cap)
    {
      size_t ncap = t->cap ? t->cap * 2 : 64;
      struct link_ent *nv = xzalloc (ncap * sizeof (*nv));
      for (size_t i = 0; i < t->cap; i++)
        if (t->v[i].name)
          {
            size_t j = link_hash (t->v[i].dev, t->v[i].ino) & (ncap - 1);
            while (nv[j].name)
              j = (j + 1) & (ncap - 1);
            nv[j] = t->v[i];
          }
      free (t->v);
      t->v = nv;
      t->cap = ncap;
    }
  size_t j = link_hash (st->st_dev, st->st_ino) & (t->cap - 1);
  while (t->v[j].name)
    {
      if (t->v[j].dev == st->st_dev && t->v[j].ino == st->st_ino)
        return t->v[j].name;
      j = (j + 1) & (t->cap - 1);
    }
  t->v[j].dev = st->st_dev;
  t->v[j].ino = st->st_ino;
  t->v[j].name = xstrdup (name);
  t->len++;
  return NULL;
}

static void
link_table_free (struct link_table *t)
{
  for (size_t i = 0; i < t->cap; i++)
    free (t->v[i].name);
  free (t->v);
}

struct diff_ctx
{
  struct archive *a;
  int out_fd;
  enum gr_whiteout_format fmt;
  gr_error_t write_err; /* set by the write callback */
  bool failed;          /* stop writing: the tar is abandoned */
  struct link_table links;
  char *buf;         /* DIFF_COPY_SIZE */
  struct gr_buf rel; /* path of the current entry, relative to the root */
  bool in_header;    /* inside archive_write_header: collect into hdr */
  struct gr_buf hdr; /* the bytes of the header being written */
};

static la_ssize_t
write_cb (struct archive *a, void *data, const void *buf, size_t len)
{
  struct diff_ctx *c = data;
  if (c->failed)
    {
      /* no end blocks after a failure: a cut tar must not look whole */
      archive_set_error (a, ECANCELED, "layer tar abandoned");
      return -1;
    }
  if (c->in_header)
    {
      gr_buf_append (&c->hdr, buf, len);
      return (la_ssize_t)len;
    }
  if (gr_write_all (c->out_fd, buf, len, &c->write_err) < 0)
    {
      archive_set_error (a, gr_error_status (&c->write_err), "%s", gr_error_msg (&c->write_err));
      return -1;
    }
  return (la_ssize_t)len;
}

/* Turn a libarchive failure into an error, preferring the write error
   (EPIPE when the reader went away) over libarchive's echo of it.  */
static int
archive_fail (struct diff_ctx *c, const char *what, gr_error_t *err)
{
  if (c->write_err)
    {
      *err = c->write_err;
      c->write_err = NULL;
      return gr_error_wrap (err, "layer tar: %s `%s`", what, c->rel.data);
    }
  int e = archive_errno (c->a);
  const char *msg = archive_error_string (c->a);
  return gr_make_error (err, e > 0 ? e : EIO, "layer tar: %s `%s`: %s", what, c->rel.data,
                        msg ? msg : "libarchive error");
}

static void
cleanup_entryp (struct archive_entry **e)
{
  if (*e)
    archive_entry_free (*e);
}
#define cleanup_entry __attribute__ ((cleanup (cleanup_entryp)))

/* security.capability of the entry, as moby's ReadSecurityXattrToTarHeader
   (read errors mean "none").  FD is the open file if there is one, else
   the value is read through DIRFD/NAME without following a symlink.  */
static void
add_capability (struct archive_entry *e, int fd, int dirfd, const char *name)
{
  unsigned char small[256];
  unsigned char *val = small;
  cleanup_free unsigned char *big = NULL;
  cleanup_free char *path = NULL;
  ssize_t n;

  if (fd < 0)
    path = xasprintf ("/proc/self/fd/%d/%s", dirfd, name);
  n = fd >= 0 ? fgetxattr (fd, CAP_XATTR, small, sizeof (small))
              : lgetxattr (path, CAP_XATTR, small, sizeof (small));
  if (n < 0 && errno == ERANGE)
    {
      ssize_t size = fd >= 0 ? fgetxattr (fd, CAP_XATTR, NULL, 0) : lgetxattr (path, CAP_XATTR, NULL, 0);
      if (size <= 0)
        return;
      big = xmalloc ((size_t)size);
      val = big;
      n = fd >= 0 ? fgetxattr (fd, CAP_XATTR, big, (size_t)size)
                  : lgetxattr (path, CAP_XATTR, big, (size_t)size);
    }
  if (n <= 0)
    return;
  /* VFS_CAP_REVISION_3 (with a root uid) makes no sense outside the user
     namespace it was made in: moby writes it as a 20-byte revision 2.  */
  if (n >= 20 && val[3] == 3)
    {
      val[3] = 2;
      n = 20;
    }
  archive_entry_xattr_add_entry (e, CAP_XATTR, val, (size_t)n);
}

/* Go's archive/tar (so moby) puts the file type bits in the ustar mode
   field (040755 for a directory); libarchive writes only the permission
   bits.  Rewrite the field of the entry's ustar header block (the last
   block the header wrote: pax records come before it) and its checksum.  */
static void
set_mode_type_bits (struct diff_ctx *c, mode_t mode)
{
  if (c->hdr.len < 512 || c->hdr.len % 512 != 0)
    return;
  unsigned char *h = (unsigned char *)c->hdr.data + c->hdr.len - 512;
  char field[9];
  snprintf (field, sizeof (field), "%07o", (unsigned)mode & 07777777);
  memcpy (h + 100, field, 8); /* 7 digits and the NUL, as Go writes it */
  unsigned sum = 0;
  memset (h + 148, ' ', 8);
  for (int i = 0; i < 512; i++)
    sum += h[i];
  snprintf (field, sizeof (field), "%06o", sum & 0777777);
  memcpy (h + 148, field, 7); /* 6 digits, NUL, space: libarchive's form */
}

/* Write E's header.  PERM_ONLY: the mode field keeps the permission bits
   alone (moby's overlay whiteout entries); else the type bits are added
   as Go's FileInfoHeader does.  */
static int
write_header (struct diff_ctx *c, struct archive_entry *e, bool perm_only, gr_error_t *err)
{
  gr_buf_reset (&c->hdr);
  c->in_header = true;
  int r = archive_write_header (c->a, e);
  c->in_header = false;
  if (r < ARCHIVE_WARN)
    return archive_fail (c, "write header", err);
  mode_t mode = archive_entry_mode (e);
  set_mode_type_bits (c, perm_only ? (mode & 07777) : mode);
  if (gr_write_all (c->out_fd, c->hdr.data, c->hdr.len, &c->write_err) < 0)
    {
      c->failed = true;
      return archive_fail (c, "write header", err);
    }
  return 0;
}

static int
write_content (struct diff_ctx *c, int fd, int64_t size, gr_error_t *err)
{
  int64_t left = size;
  (void)posix_fadvise (fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  while (left > 0)
    {
      size_t want = left < DIFF_COPY_SIZE ? (size_t)left : DIFF_COPY_SIZE;
      ssize_t r = read (fd, c->buf, want);
      if (r < 0)
        {
          if (errno == EINTR)
            continue;
          return gr_make_error (err, errno, "layer tar: read `%s`", c->rel.data);
        }
      /* A file that shrank since its stat is padded with zeros by
         libarchive; one that grew is cut at its stat size.  */
      if (r == 0)
        break;
      if (archive_write_data (c->a, c->buf, (size_t)r) < 0)
        return archive_fail (c, "write data", err);
      left -= r;
    }
  if (archive_write_finish_entry (c->a) < ARCHIVE_WARN)
    return archive_fail (c, "finish entry", err);
  return 0;
}

static bool
is_overlay_whiteout (struct diff_ctx *c, const struct stat *st)
{
  return c->fmt == GR_WHITEOUT_OVERLAY && gr_whiteout_is_overlay_file (st);
}

/* The aufs driver excludes `.wh..wh.*` at the layer root but `.wh..wh..opq`
   (moby's pattern matcher only matches the first path component).  */
static bool
is_aufs_internal (struct diff_ctx *c, const char *name)
{
  cleanup_error gr_error_t e = NULL;
  enum gr_whiteout_kind kind;
  if (c->fmt != GR_WHITEOUT_AUFS || gr_whiteout_classify_name (name, &kind, NULL, &e) < 0)
    return false; /* a malformed `.wh.` name is an ordinary entry here */
  return kind == GR_WH_INTERNAL;
}

/* Fill E from ST for the entry c->rel (which already has its '/' for a
   directory).  */
static void
fill_entry (struct diff_ctx *c, struct archive_entry *e, const struct stat *st)
{
  archive_entry_copy_pathname (e, c->rel.data);
  archive_entry_set_mode (e, st->st_mode & (S_IFMT | 07777));
  archive_entry_set_uid (e, st->st_uid);
  archive_entry_set_gid (e, st->st_gid);
  archive_entry_set_mtime (e, st->st_mtim.tv_sec, 0);
  archive_entry_set_size (e, S_ISREG (st->st_mode) ? st->st_size : 0);
  if (S_ISCHR (st->st_mode) || S_ISBLK (st->st_mode))
    {
      archive_entry_set_rdevmajor (e, major (st->st_rdev));
      archive_entry_set_rdevminor (e, minor (st->st_rdev));
    }
}

static int walk_dir (struct diff_ctx *c, int *dirfd, const struct stat *dir_st, unsigned depth,
                     gr_error_t *err);

/* The directory NAME of *DIRFD (at DEPTH, whose stat is DIR_ST) and what
   is below it.  */
static int
add_dir (struct diff_ctx *c, int *dirfd, const struct stat *dir_st, const char *name, unsigned depth,
         gr_error_t *err)
{
  cleanup_close int fd = openat (*dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    {
      if (errno == ENOENT)
        return 0; /* gone since readdir, as moby's walk skips it */
      return gr_make_error (err, errno, "layer tar: open `%s`", c->rel.data);
    }
  struct stat st;
  if (fstat (fd, &st) < 0)
    return gr_make_error (err, errno, "layer tar: stat `%s`", c->rel.data);

  gr_buf_puts (&c->rel, "/");
  cleanup_entry struct archive_entry *e = archive_entry_new ();
  fill_entry (c, e, &st);
  add_capability (e, fd, -1, NULL);
  if (write_header (c, e, false, err) < 0)
    return -1;

  if (c->fmt == GR_WHITEOUT_OVERLAY && gr_whiteout_is_overlay_opaque (fd, ""))
    {
      size_t mark = c->rel.len;
      gr_buf_puts (&c->rel, GR_WH_OPAQUE);
      archive_entry_clear (e);
      archive_entry_copy_pathname (e, c->rel.data);
      archive_entry_set_mode (e, S_IFREG | (st.st_mode & 0777));
      archive_entry_set_uid (e, st.st_uid);
      archive_entry_set_gid (e, st.st_gid);
      archive_entry_set_mtime (e, 0, 0);
      archive_entry_set_size (e, 0);
      if (write_header (c, e, true, err) < 0)
        return -1;
      c->rel.len = mark;
      c->rel.data[mark] = '\0';
    }

  gr_archive_walk_leave (dirfd, depth);
  int ret = walk_dir (c, &fd, &st, depth + 1, err);
  if (ret == 0 && gr_archive_walk_back (dirfd, fd, dir_st, err) < 0)
    return gr_error_wrap (err, "layer tar: `%s`", c->rel.data);
  return ret;
}

static int
add_nondir (struct diff_ctx *c, int dirfd, const char *name, struct stat *st, gr_error_t *err)
{
  cleanup_close int fd = -1;
  if (S_ISSOCK (st->st_mode))
    return 0; /* Go's archive/tar has no sockets: moby logs and skips them */

  if (S_ISREG (st->st_mode))
    {
      fd = openat (dirfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
      if (fd < 0)
        {
          if (errno == ENOENT)
            return 0;
          return gr_make_error (err, errno, "layer tar: open `%s`", c->rel.data);
        }
      if (fstat (fd, st) < 0)
        return gr_make_error (err, errno, "layer tar: stat `%s`", c->rel.data);
      if (!S_ISREG (st->st_mode))
        return 0; /* replaced while we walked */
    }

  cleanup_entry struct archive_entry *e = archive_entry_new ();
  fill_entry (c, e, st);

  if (S_ISLNK (st->st_mode))
    {
      size_t size = st->st_size > 0 ? (size_t)st->st_size + 1 : 256;
      for (;;)
        {
          cleanup_free char *target = xmalloc (size);
          ssize_t n = readlinkat (dirfd, name, target, size);
          if (n < 0)
            {
              if (errno == ENOENT)
                return 0;
              return gr_make_error (err, errno, "layer tar: readlink `%s`", c->rel.data);
            }
          if ((size_t)n < size)
            {
              target[n] = '\0';
              archive_entry_copy_symlink (e, target);
              break;
            }
          size *= 2;
        }
    }

  add_capability (e, fd, dirfd, name);

  bool whiteout = is_overlay_whiteout (c, st);
  bool link = false;
  /* Overlay whiteouts are often hard links of one inode (the kernel shares
     it); they are not tracked as links: each becomes its own `.wh.` file.  */
  if (st->st_nlink > 1 && !whiteout)
    {
      const char *first = link_seen (&c->links, st, c->rel.data);
      if (first)
        {
          archive_entry_copy_hardlink (e, first);
          archive_entry_set_size (e, 0);
          link = true;
        }
    }

  if (whiteout)
    {
      size_t base = c->rel.len - strlen (name);
      cleanup_free char *wh = xasprintf ("%.*s" GR_WH_PREFIX "%s", (int)base, c->rel.data, name);
      archive_entry_copy_pathname (e, wh);
      archive_entry_set_mode (e, S_IFREG | 0600);
      archive_entry_set_size (e, 0);
    }

  if (write_header (c, e, whiteout, err) < 0)
    return -1;
  if (fd >= 0 && !link && st->st_size > 0)
    return write_content (c, fd, st->st_size, err);
  return 0;
}

static int
walk_dir (struct diff_ctx *c, int *dirfd, const struct stat *dir_st, unsigned depth, gr_error_t *err)
{
  char **names = NULL;
  size_t n = 0;
  bool top = c->rel.len == 0;
  int ret = 0;

  if (gr_archive_read_names (&names, &n, *dirfd, err) < 0)
    return gr_error_wrap (err, "layer tar: `%s`", top ? "." : c->rel.data);

  size_t mark = c->rel.len;
  for (size_t i = 0; i < n && ret == 0; i++)
    {
      const char *name = names[i];
      if (top && is_aufs_internal (c, name))
        continue;
      gr_buf_puts (&c->rel, name);
      struct stat st;
      if (fstatat (*dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        {
          if (errno != ENOENT)
            ret = gr_make_error (err, errno, "layer tar: stat `%s`", c->rel.data);
        }
      else if (S_ISDIR (st.st_mode))
        ret = add_dir (c, dirfd, dir_st, name, depth, err);
      else
        ret = add_nondir (c, *dirfd, name, &st, err);
      c->rel.len = mark;
      c->rel.data[mark] = '\0';
    }
  gr_archive_free_names (names, n);
  return ret;
}

static void
cleanup_archivep (struct archive **a)
{
  if (*a)
    archive_write_free (*a);
}

int
gr_archive_diff (int out_fd, int layer_dirfd, enum gr_whiteout_format f, gr_error_t *err)
{
  __attribute__ ((cleanup (cleanup_archivep))) struct archive *a = archive_write_new ();
  struct diff_ctx c = { .a = a, .out_fd = out_fd, .fmt = f };
  cleanup_free char *buf = xmalloc (DIFF_COPY_SIZE);
  int ret;

  c.buf = buf;
  gr_buf_puts (&c.rel, "");

  /* Names go out byte for byte: in a UTF-8 locale libarchive stores valid
     UTF-8 names as pax `path` records unchanged (as Go does) and falls
     back to hdrcharset=BINARY, still unchanged, for the rest.  The
     locale is per thread: the server runs requests in parallel.  */
  locale_t loc = newlocale (LC_CTYPE_MASK, "C.UTF-8", (locale_t)0);
  locale_t old = loc ? uselocale (loc) : (locale_t)0;

  if (archive_write_set_format_pax_restricted (a) != ARCHIVE_OK
      || archive_write_set_format_option (a, "pax", "xattrheader", "SCHILY") < ARCHIVE_WARN
      /* unblocked: each header reaches write_cb while it is written */
      || archive_write_set_bytes_per_block (a, 0) != ARCHIVE_OK
      || archive_write_open (a, &c, NULL, write_cb, NULL) != ARCHIVE_OK)
    ret = archive_fail (&c, "open writer", err);
  else
    {
      int rootfd = layer_dirfd; /* depth 0: never closed */
      struct stat root_st;
      if (fstat (rootfd, &root_st) < 0)
        ret = gr_make_error (err, errno, "layer tar: stat layer directory");
      else
        ret = walk_dir (&c, &rootfd, &root_st, 0, err);
      if (ret == 0)
        {
          c.rel.len = 0;
          c.rel.data[0] = '\0';
          if (archive_write_close (a) != ARCHIVE_OK)
            ret = archive_fail (&c, "close", err);
        }
    }

  c.failed = ret < 0;
  archive_write_free (gr_steal (a));
  if (loc)
    {
      uselocale (old);
      freelocale (loc);
    }
  link_table_free (&c.links);
  gr_buf_free (&c.rel);
  gr_buf_free (&c.hdr);
  gr_error_release (&c.write_err);
  return ret;
}

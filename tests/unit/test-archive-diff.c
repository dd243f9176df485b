#include "config.h"

#include "archive.h"
#include "fsutil.h"
#include "unit.h"

#include <archive.h>
#include <archive_entry.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>

static int layer_no;
static char *last_tar; /* the bytes of the last diff_and_read */
static off_t last_size;

static int
teardown (void)
{
  free (last_tar);
  last_tar = NULL;
  return unit_sandbox_teardown ();
}

/* A fresh layer directory in the unit_sandbox; *PATH gets its absolute path.  */
static int
new_layer (char **path)
{
  char *name = xasprintf ("layer%d", layer_no++);
  CU_ASSERT_FATAL (mkdirat (unit_sandbox_fd, name, 0755) == 0);
  int fd = openat (unit_sandbox_fd, name, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_FATAL (fd >= 0);
  if (path)
    *path = xasprintf ("%s/%s", unit_sandbox, name);
  free (name);
  return fd;
}

static void
put_file (int dirfd, const char *name, const char *content, mode_t mode, uid_t uid, gid_t gid)
{
  int fd = openat (dirfd, name, O_WRONLY | O_CREAT | O_EXCL, 0600);
  CU_ASSERT_FATAL (fd >= 0);
  if (content)
    CU_ASSERT_FATAL (write (fd, content, strlen (content)) == (ssize_t)strlen (content));
  CU_ASSERT_FATAL (fchown (fd, uid, gid) == 0);
  CU_ASSERT_FATAL (fchmod (fd, mode) == 0);
  close (fd);
}

static void
set_mtime (int dirfd, const char *name, time_t sec, long nsec)
{
  struct timespec ts[2] = { { sec, nsec }, { sec, nsec } };
  CU_ASSERT_FATAL (utimensat (dirfd, name, ts, AT_SYMLINK_NOFOLLOW) == 0);
}

static void
set_xattr (int dirfd, const char *name, const char *key, const void *val, size_t len)
{
  char *p = xasprintf ("/proc/self/fd/%d/%s", dirfd, name);
  CU_ASSERT_FATAL (lsetxattr (p, key, val, len, 0) == 0);
  free (p);
}

/* What the produced tar says about one entry.  */
struct tent
{
  char *name;
  mode_t mode;
  int64_t uid, gid;
  time_t mtime;
  long mtime_nsec;
  int64_t size;
  char *hardlink;
  char *symlink;
  unsigned rmaj, rmin;
  int nxattr;
  unsigned char cap[64];
  size_t caplen;
  char *data;
  size_t datalen;
  bool pax;     /* preceded by a pax extended header */
  char rawtype; /* the ustar typeflag */
};

static struct tent ents[2048];
static size_t nents;

static void
free_ents (void)
{
  for (size_t i = 0; i < nents; i++)
    {
      free (ents[i].name);
      free (ents[i].hardlink);
      free (ents[i].symlink);
      free (ents[i].data);
    }
  memset (ents, 0, sizeof (ents));
  nents = 0;
}

static char *
dup_or_null (const char *s)
{
  return s ? xstrdup (s) : NULL;
}

/* Read a whole tar from FD with libarchive into ents[].  */
static void
read_tar (int fd)
{
  free_ents ();
  struct archive *a = archive_read_new ();
  archive_read_support_format_tar (a);
  CU_ASSERT_FATAL (archive_read_open_fd (a, fd, 65536) == ARCHIVE_OK);
  struct archive_entry *e;
  int r;
  while ((r = archive_read_next_header (a, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN)
    {
      CU_ASSERT_FATAL (nents < sizeof (ents) / sizeof (ents[0]));
      struct tent *t = &ents[nents++];
      t->name = xstrdup (archive_entry_pathname (e));
      t->mode = archive_entry_mode (e);
      t->uid = archive_entry_uid (e);
      t->gid = archive_entry_gid (e);
      t->mtime = archive_entry_mtime (e);
      t->mtime_nsec = archive_entry_mtime_nsec (e);
      t->size = archive_entry_size (e);
      t->hardlink = dup_or_null (archive_entry_hardlink (e));
      t->symlink = dup_or_null (archive_entry_symlink (e));
      t->rmaj = archive_entry_rdevmajor (e);
      t->rmin = archive_entry_rdevminor (e);
      t->nxattr = archive_entry_xattr_reset (e);
      const char *xn;
      const void *xv;
      size_t xl;
      while (archive_entry_xattr_next (e, &xn, &xv, &xl) == ARCHIVE_OK)
        if (strcmp (xn, "security.capability") == 0 && xl <= sizeof (t->cap))
          {
            memcpy (t->cap, xv, xl);
            t->caplen = xl;
          }
      if (t->size > 0 && t->size < (1 << 20))
        {
          t->data = xmalloc ((size_t)t->size);
          t->datalen = (size_t)archive_read_data (a, t->data, (size_t)t->size);
        }
    }
  CU_ASSERT_EQUAL (r, ARCHIVE_EOF);
  archive_read_free (a);

  /* libarchive's archive_format() sticks at pax once it saw one: look at
     the raw headers for which entries have an extended header.  */
  CU_ASSERT_FATAL (lseek (fd, 0, SEEK_SET) == 0);
  unsigned char blk[512];
  size_t k = 0;
  bool pending = false;
  while (read (fd, blk, sizeof (blk)) == sizeof (blk))
    {
      static const unsigned char zero[512];
      if (memcmp (blk, zero, sizeof (blk)) == 0)
        break;
      char sz[13] = { 0 };
      memcpy (sz, blk + 124, 12);
      long long size = strtoll (sz, NULL, 8);
      if (blk[156] == 'x')
        pending = true;
      else
        {
          CU_ASSERT_FATAL (k < nents);
          ents[k].pax = pending;
          ents[k].rawtype = (char)blk[156];
          pending = false;
          k++;
        }
      CU_ASSERT_FATAL (lseek (fd, (size + 511) / 512 * 512, SEEK_CUR) >= 0);
    }
  CU_ASSERT_EQUAL (k, nents);
}

static struct tent *
find (const char *name)
{
  for (size_t i = 0; i < nents; i++)
    if (strcmp (ents[i].name, name) == 0)
      return &ents[i];
  return NULL;
}

static void
assert_names (const char *const *want, size_t n)
{
  CU_ASSERT_EQUAL (nents, n);
  for (size_t i = 0; i < n && i < nents; i++)
    if (strcmp (ents[i].name, want[i]) != 0)
      {
        fprintf (stderr, "\nentry %zu: got `%s`, want `%s`\n", i, ents[i].name, want[i]);
        CU_FAIL ("entry order");
      }
}

/* Run the diff of LAYER into a memfd and read it back.  Returns the tar size.  */
static off_t
diff_and_read (int layer, enum gr_whiteout_format f)
{
  int out = memfd_create ("tar", MFD_CLOEXEC);
  CU_ASSERT_FATAL (out >= 0);
  ASSERT_OK (gr_archive_diff (out, layer, f, err_));
  off_t size = lseek (out, 0, SEEK_CUR);
  free (last_tar);
  last_tar = xmalloc ((size_t)size + 1);
  CU_ASSERT_FATAL (pread (out, last_tar, (size_t)size, 0) == size);
  last_size = size;
  CU_ASSERT_FATAL (lseek (out, 0, SEEK_SET) == 0);
  read_tar (out);
  close (out);
  return size;
}

/* The raw ustar mode field of the header named NAME in the last tar (-1
   if none): Go, so moby, puts the file type bits there.  */
static long
raw_mode (const char *name)
{
  for (off_t off = 0; off + 512 <= last_size; off += 512)
    if (strncmp (last_tar + off, name, 100) == 0 && memcmp (last_tar + off + 257, "ustar", 5) == 0)
      return strtol (last_tar + off + 100, NULL, 8);
  return -1;
}

static const char long_name[]
    = "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn"
      "nnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnnn";
static const char long_target[]
    = "tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt/"
      "tttttttttttttttttttttttttttttttttttttttttttttttt";

static void
test_diff_aufs (void)
{
  int l = new_layer (NULL);

  /* aufs internals at the root, and whiteouts hard-linked to the base */
  put_file (l, ".wh..wh.aufs", NULL, 0444, 0, 0);
  CU_ASSERT_FATAL (mkdirat (l, ".wh..wh.plnk", 0700) == 0);
  put_file (l, ".wh..wh.plnk/12.34", "pseudo link", 0644, 0, 0);
  CU_ASSERT_FATAL (mkdirat (l, ".wh..wh.orph", 0700) == 0);
  put_file (l, ".wh..wh..opq", NULL, 0444, 0, 0);
  CU_ASSERT_FATAL (linkat (l, ".wh..wh.aufs", l, ".wh.gone", 0) == 0);

  CU_ASSERT_FATAL (mkdirat (l, "a", 0750) == 0);
  CU_ASSERT_FATAL (fchownat (l, "a", 11, 12, 0) == 0);
  put_file (l, "a/file", "hello", 0644, 1000, 1001);
  set_mtime (l, "a/file", 1234567890, 987654321);
  CU_ASSERT_FATAL (linkat (l, "a/file", l, "a/hard", 0) == 0);
  CU_ASSERT_FATAL (mkdirat (l, "a/sub", 0755) == 0);
  put_file (l, "a/sub/.wh..wh..opq", NULL, 0444, 0, 0);
  CU_ASSERT_FATAL (linkat (l, ".wh..wh.aufs", l, "a/sub/.wh.y", 0) == 0);
  put_file (l, "a/sub/x", "x", 0600, 0, 0);
  set_mtime (l, "a", 1500000000, 5);

  CU_ASSERT_FATAL (symlinkat ("a/file", l, "b-link") == 0);
  CU_ASSERT_FATAL (fchownat (l, "b-link", 3, 4, AT_SYMLINK_NOFOLLOW) == 0);
  put_file (l, "bad\xff\xfe", "latin1", 0644, 0, 0);
  put_file (l, "big", "ids", 0644, 3000000, 4000000);
  CU_ASSERT_FATAL (mknodat (l, "blk", S_IFBLK | 0660, makedev (7, 0)) == 0);
  CU_ASSERT_FATAL (fchmodat (l, "blk", 0660, 0) == 0);
  static const unsigned char cap2[20] = { 0x00, 0x00, 0x00, 0x02, 0x00, 0x04 };
  static const unsigned char cap3[24] = { 0x01, 0x00, 0x00, 0x03, 0x00, 0x04, 0, 0, 0,    0,    0,    0,
                                          0,    0,    0,    0,    0,    0,    0, 0, 0xe8, 0x03, 0x00, 0x00 };
  put_file (l, "cap2", "c2", 0755, 0, 0);
  set_xattr (l, "cap2", "security.capability", cap2, sizeof (cap2));
  put_file (l, "cap3", "c3", 0755, 0, 0);
  set_xattr (l, "cap3", "security.capability", cap3, sizeof (cap3));
  CU_ASSERT_FATAL (mknodat (l, "chr", S_IFCHR | 0666, makedev (1, 3)) == 0);
  CU_ASSERT_FATAL (fchmodat (l, "chr", 0666, 0) == 0);
  CU_ASSERT_FATAL (mkfifoat (l, "fifo", 0640) == 0);
  put_file (l, "h\xc3\xa9llo", "utf8", 0644, 0, 0);
  CU_ASSERT_FATAL (symlinkat (long_target, l, "longlink") == 0);
  put_file (l, long_name, "long", 0644, 0, 0);
  put_file (l, "sgid", NULL, 02755, 0, 50);
  int s = socket (AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un sa = { .sun_family = AF_UNIX };
  snprintf (sa.sun_path, sizeof (sa.sun_path), "/proc/self/fd/%d/sock", l);
  CU_ASSERT_FATAL (bind (s, (struct sockaddr *)&sa, sizeof (sa)) == 0);
  close (s);
  CU_ASSERT_FATAL (mkdirat (l, "sticky", 0777) == 0);
  CU_ASSERT_FATAL (fchmodat (l, "sticky", 01777, 0) == 0);
  put_file (l, "suid", NULL, 04755, 0, 0);
  put_file (l, "xattr", NULL, 0644, 0, 0);
  set_xattr (l, "xattr", "user.foo", "bar", 3);
  put_file (l, "zero", "secret", 0, 0, 0);
  CU_ASSERT_FATAL (mkdirat (l, "zlocked", 0700) == 0);
  put_file (l, "zlocked/in", "inside", 0600, 0, 0);
  CU_ASSERT_FATAL (fchmodat (l, "zlocked", 0, 0) == 0);

  /* the same layer gives the same bytes (its digest is the DiffID) */
  off_t size1 = diff_and_read (l, GR_WHITEOUT_AUFS);
  char *first = gr_steal (last_tar);
  off_t size2 = diff_and_read (l, GR_WHITEOUT_AUFS);
  CU_ASSERT (size1 == size2 && memcmp (first, last_tar, (size_t)size1) == 0);
  free (first);
  const char *const want[] = {
    ".wh..wh..opq", ".wh.gone", "a/",     "a/file",       "a/hard",   "a/sub/",     "a/sub/.wh..wh..opq",
    "a/sub/.wh.y",  "a/sub/x",  "b-link", "bad\xff\xfe",  "big",      "blk",        "cap2",
    "cap3",         "chr",      "fifo",   "h\xc3\xa9llo", "longlink", long_name,    "sgid",
    "sticky/",      "suid",     "xattr",  "zero",         "zlocked/", "zlocked/in",
  };
  assert_names (want, sizeof (want) / sizeof (want[0]));
  /* pax extended headers exactly where ustar cannot hold the entry */
  const char *const want_pax[]
      = { "bad\xff\xfe", "big", "cap2", "cap3", "h\xc3\xa9llo", "longlink", long_name };
  for (size_t i = 0; i < nents; i++)
    {
      bool expect = false;
      for (size_t j = 0; j < sizeof (want_pax) / sizeof (want_pax[0]); j++)
        expect |= strcmp (ents[i].name, want_pax[j]) == 0;
      if (ents[i].pax != expect)
        fprintf (stderr, "\n`%s`: pax %d, want %d\n", ents[i].name, ents[i].pax, expect);
      CU_ASSERT_EQUAL (ents[i].pax, expect);
    }

  struct tent *t;
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("a/"));
  CU_ASSERT_EQUAL (t->mode, S_IFDIR | 0750);
  CU_ASSERT_EQUAL (t->uid, 11);
  CU_ASSERT_EQUAL (t->gid, 12);
  CU_ASSERT_EQUAL (t->mtime, 1500000000);
  CU_ASSERT_EQUAL (t->mtime_nsec, 0);
  CU_ASSERT (!t->pax);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("a/file"));
  CU_ASSERT_EQUAL (t->mode, S_IFREG | 0644);
  CU_ASSERT_EQUAL (t->uid, 1000);
  CU_ASSERT_EQUAL (t->gid, 1001);
  CU_ASSERT_EQUAL (t->mtime, 1234567890);
  CU_ASSERT_EQUAL (t->mtime_nsec, 0);
  CU_ASSERT_EQUAL (t->size, 5);
  CU_ASSERT (t->datalen == 5 && memcmp (t->data, "hello", 5) == 0);
  CU_ASSERT_PTR_NULL (t->hardlink);
  CU_ASSERT_EQUAL (t->nxattr, 0);
  CU_ASSERT (!t->pax);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("a/hard"));
  CU_ASSERT_PTR_NOT_NULL_FATAL (t->hardlink);
  CU_ASSERT_STRING_EQUAL (t->hardlink, "a/file");
  CU_ASSERT_EQUAL (t->size, 0);
  CU_ASSERT_EQUAL (t->rawtype, '1');

  /* aufs whiteouts hard-linked to the (excluded) base: the first one seen
     is the file, later ones link to it, as moby writes them */
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find (".wh.gone"));
  CU_ASSERT_PTR_NULL (t->hardlink);
  CU_ASSERT_EQUAL (t->mode, S_IFREG | 0444);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("a/sub/.wh.y"));
  CU_ASSERT (t->hardlink && strcmp (t->hardlink, ".wh.gone") == 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("b-link"));
  CU_ASSERT_EQUAL (t->mode, S_IFLNK | 0777);
  CU_ASSERT (t->symlink && strcmp (t->symlink, "a/file") == 0);
  CU_ASSERT_EQUAL (t->uid, 3);
  CU_ASSERT_EQUAL (t->gid, 4);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("bad\xff\xfe"));
  CU_ASSERT (t->datalen == 6 && memcmp (t->data, "latin1", 6) == 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("h\xc3\xa9llo"));
  CU_ASSERT (t->pax);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("big"));
  CU_ASSERT_EQUAL (t->uid, 3000000);
  CU_ASSERT_EQUAL (t->gid, 4000000);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("blk"));
  CU_ASSERT_EQUAL (t->mode, S_IFBLK | 0660);
  CU_ASSERT (t->rmaj == 7 && t->rmin == 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("chr"));
  CU_ASSERT_EQUAL (t->mode, S_IFCHR | 0666);
  CU_ASSERT (t->rmaj == 1 && t->rmin == 3);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("fifo"));
  CU_ASSERT_EQUAL (t->mode, S_IFIFO | 0640);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("cap2"));
  CU_ASSERT_EQUAL (t->nxattr, 1);
  CU_ASSERT (t->caplen == 20 && memcmp (t->cap, cap2, 20) == 0);
  CU_ASSERT (t->datalen == 2 && memcmp (t->data, "c2", 2) == 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("cap3"));
  CU_ASSERT_EQUAL (t->nxattr, 1);
  unsigned char as_v2[20];
  memcpy (as_v2, cap3, 20);
  as_v2[3] = 2;
  CU_ASSERT (t->caplen == 20 && memcmp (t->cap, as_v2, 20) == 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("longlink"));
  CU_ASSERT (t->symlink && strcmp (t->symlink, long_target) == 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find (long_name));
  CU_ASSERT (t->datalen == 4 && memcmp (t->data, "long", 4) == 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("sgid"));
  CU_ASSERT_EQUAL (t->mode, S_IFREG | 02755);
  CU_ASSERT_EQUAL (t->gid, 50);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("suid"));
  CU_ASSERT_EQUAL (t->mode, S_IFREG | 04755);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("sticky/"));
  CU_ASSERT_EQUAL (t->mode, S_IFDIR | 01777);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("xattr"));
  CU_ASSERT_EQUAL (t->nxattr, 0);
  CU_ASSERT (!t->pax);

  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("zero"));
  CU_ASSERT_EQUAL (t->mode, S_IFREG | 0);
  CU_ASSERT (t->datalen == 6 && memcmp (t->data, "secret", 6) == 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("zlocked/"));
  CU_ASSERT_EQUAL (t->mode, S_IFDIR | 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("zlocked/in"));
  CU_ASSERT (t->datalen == 6 && memcmp (t->data, "inside", 6) == 0);

  close (l);
  free_ents ();
}

static void
test_diff_overlay (void)
{
  int l = new_layer (NULL);

  put_file (l, ".wh..wh.aufs", NULL, 0444, 0, 0); /* no excludes for overlay */
  CU_ASSERT_FATAL (mknodat (l, "c", S_IFCHR | 0600, makedev (1, 3)) == 0);
  CU_ASSERT_FATAL (mkdirat (l, "d", 0755) == 0);
  CU_ASSERT_FATAL (mknodat (l, "d/x", S_IFCHR | 0, makedev (0, 0)) == 0);
  CU_ASSERT_FATAL (fchownat (l, "d/x", 9, 10, 0) == 0);
  set_mtime (l, "d/x", 1000000000, 123);
  /* the kernel shares one whiteout inode between whiteouts */
  CU_ASSERT_FATAL (linkat (l, "d/x", l, "d/y", 0) == 0);
  CU_ASSERT_FATAL (mkdirat (l, "o", 0750) == 0);
  CU_ASSERT_FATAL (fchmodat (l, "o", 02750, 0) == 0);
  CU_ASSERT_FATAL (fchownat (l, "o", 7, 8, 0) == 0);
  set_xattr (l, "o", "trusted.overlay.opaque", "y", 1);
  put_file (l, "o/f", "f", 0644, 0, 0);
  CU_ASSERT_FATAL (mkdirat (l, "p", 0755) == 0);
  set_xattr (l, "p", "trusted.overlay.opaque", "n", 1);

  diff_and_read (l, GR_WHITEOUT_OVERLAY);
  CU_ASSERT_EQUAL (raw_mode ("d/"), 040755);
  CU_ASSERT_EQUAL (raw_mode ("c"), 020600);
  CU_ASSERT_EQUAL (raw_mode ("o/"), 042750);
  CU_ASSERT_EQUAL (raw_mode ("o/f"), 0100644);
  /* moby's overlay whiteouts keep the permission bits alone */
  CU_ASSERT_EQUAL (raw_mode ("d/.wh.x"), 0600);
  CU_ASSERT_EQUAL (raw_mode ("o/.wh..wh..opq"), 0750);
  const char *const want[] = {
    ".wh..wh.aufs", "c", "d/", "d/.wh.x", "d/.wh.y", "o/", "o/.wh..wh..opq", "o/f", "p/",
  };
  assert_names (want, sizeof (want) / sizeof (want[0]));

  struct tent *t;
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("c"));
  CU_ASSERT_EQUAL (t->mode, S_IFCHR | 0600);
  for (int i = 0; i < 2; i++)
    {
      CU_ASSERT_PTR_NOT_NULL_FATAL (t = find (i ? "d/.wh.y" : "d/.wh.x"));
      CU_ASSERT_EQUAL (t->mode, S_IFREG | 0600);
      CU_ASSERT_EQUAL (t->size, 0);
      CU_ASSERT_EQUAL (t->uid, 9);
      CU_ASSERT_EQUAL (t->gid, 10);
      CU_ASSERT_EQUAL (t->mtime, 1000000000);
      CU_ASSERT_PTR_NULL (t->hardlink);
      CU_ASSERT_PTR_NULL (t->symlink);
      CU_ASSERT_EQUAL (t->rawtype, '0');
      CU_ASSERT (!t->pax);
    }
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("o/"));
  CU_ASSERT_EQUAL (t->mode, S_IFDIR | 02750);
  CU_ASSERT_EQUAL (t->nxattr, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("o/.wh..wh..opq"));
  CU_ASSERT_EQUAL (t->mode, S_IFREG | 0750);
  CU_ASSERT_EQUAL (t->uid, 7);
  CU_ASSERT_EQUAL (t->gid, 8);
  CU_ASSERT_EQUAL (t->mtime, 0);
  CU_ASSERT_EQUAL (t->size, 0);

  /* the same layer read as aufs: nothing is converted */
  diff_and_read (l, GR_WHITEOUT_AUFS);
  const char *const want_aufs[] = { "c", "d/", "d/x", "d/y", "o/", "o/f", "p/" };
  assert_names (want_aufs, sizeof (want_aufs) / sizeof (want_aufs[0]));
  CU_ASSERT_PTR_NOT_NULL_FATAL (t = find ("d/y"));
  CU_ASSERT (t->hardlink && strcmp (t->hardlink, "d/x") == 0);

  close (l);
  free_ents ();
}

static void
test_diff_empty (void)
{
  int l = new_layer (NULL);
  int out = memfd_create ("tar", MFD_CLOEXEC);
  ASSERT_OK (gr_archive_diff (out, l, GR_WHITEOUT_AUFS, err_));
  /* an empty layer is the two end blocks and nothing else, as Go writes it */
  CU_ASSERT_EQUAL (lseek (out, 0, SEEK_CUR), 1024);
  char buf[1024];
  CU_ASSERT_EQUAL (pread (out, buf, sizeof (buf), 0), 1024);
  static const char zeros[1024];
  CU_ASSERT (memcmp (buf, zeros, sizeof (buf)) == 0);
  close (out);

  /* no padding to a 10 KiB record either */
  put_file (l, "f", "12345", 0644, 0, 0);
  off_t size = diff_and_read (l, GR_WHITEOUT_AUFS);
  CU_ASSERT_EQUAL (size, 512 + 512 + 1024);
  close (l);
  free_ents ();
}

/* A chain of DEPTH directories `d` with a file `leaf` at the bottom.  */
static void
make_deep (int dirfd, int depth)
{
  int fd = dup (dirfd);
  for (int i = 0; i < depth; i++)
    {
      CU_ASSERT_FATAL (mkdirat (fd, "d", 0755) == 0);
      int nfd = openat (fd, "d", O_RDONLY | O_DIRECTORY);
      CU_ASSERT_FATAL (nfd >= 0);
      close (fd);
      fd = nfd;
    }
  put_file (fd, "leaf", "deep", 0644, 0, 0);
  close (fd);
}

/* Deeper than the fd limit (moby walks paths up to PATH_MAX).  */
static void
test_diff_deep (void)
{
  int l = new_layer (NULL);
  const int depth = 1500;
  make_deep (l, depth);
  int out = memfd_create ("tar", MFD_CLOEXEC);
  struct rlimit old, low;
  CU_ASSERT_FATAL (getrlimit (RLIMIT_NOFILE, &old) == 0);
  low = old;
  low.rlim_cur = 256;
  CU_ASSERT_FATAL (setrlimit (RLIMIT_NOFILE, &low) == 0);
  gr_error_t err = NULL;
  int r = gr_archive_diff (out, l, GR_WHITEOUT_AUFS, &err);
  CU_ASSERT_FATAL (setrlimit (RLIMIT_NOFILE, &old) == 0);
  if (r < 0)
    fprintf (stderr, "\n%s\n", gr_error_msg (&err));
  CU_ASSERT_FATAL (r >= 0);
  CU_ASSERT_FATAL (lseek (out, 0, SEEK_SET) == 0);
  read_tar (out);
  close (out);
  CU_ASSERT_EQUAL (nents, (size_t)depth + 1);
  if (nents == (size_t)depth + 1)
    {
      CU_ASSERT_EQUAL (strlen (ents[depth].name), (size_t)depth * 2 + 4);
      CU_ASSERT (ents[depth].datalen == 4 && memcmp (ents[depth].data, "deep", 4) == 0);
      CU_ASSERT_EQUAL (strlen (ents[depth - 1].name), (size_t)depth * 2);
    }
  close (l);
  free_ents ();
}

struct reader
{
  int fd;
  int64_t big_size;
  int64_t big_read;
  char small[16];
  int n;
  int result;
};

static void *
reader_main (void *arg)
{
  struct reader *r = arg;
  struct archive *a = archive_read_new ();
  archive_read_support_format_tar (a);
  r->result = archive_read_open_fd (a, r->fd, 65536);
  struct archive_entry *e;
  static char buf[1 << 16];
  while (r->result == ARCHIVE_OK && archive_read_next_header (a, &e) == ARCHIVE_OK)
    {
      r->n++;
      if (strcmp (archive_entry_pathname (e), "big") == 0)
        {
          r->big_size = archive_entry_size (e);
          la_ssize_t n;
          while ((n = archive_read_data (a, buf, sizeof (buf))) > 0)
            r->big_read += n;
        }
      else
        archive_read_data (a, r->small, sizeof (r->small) - 1);
    }
  archive_read_free (a);
  return NULL;
}

static long
max_rss_kib (void)
{
  struct rusage ru;
  getrusage (RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

static void
test_diff_streams (void)
{
  int l = new_layer (NULL);
  const int64_t big = (int64_t)1 << 30;
  int fd = openat (l, "big", O_WRONLY | O_CREAT, 0644);
  CU_ASSERT_FATAL (fd >= 0);
  CU_ASSERT_FATAL (ftruncate (fd, big) == 0);
  CU_ASSERT_FATAL (pwrite (fd, "end", 3, big - 3) == 3);
  close (fd);
  put_file (l, "zz", "after", 0644, 0, 0);

  int p[2];
  CU_ASSERT_FATAL (pipe (p) == 0);
  struct reader r = { .fd = p[0] };
  pthread_t th;
  CU_ASSERT_FATAL (pthread_create (&th, NULL, reader_main, &r) == 0);
  long rss0 = max_rss_kib ();
  ASSERT_OK (gr_archive_diff (p[1], l, GR_WHITEOUT_AUFS, err_));
  long rss1 = max_rss_kib ();
  close (p[1]);
  pthread_join (th, NULL);
  close (p[0]);
  CU_ASSERT_EQUAL (r.result, ARCHIVE_OK);
  CU_ASSERT_EQUAL (r.n, 2);
  CU_ASSERT_EQUAL (r.big_size, big);
  CU_ASSERT_EQUAL (r.big_read, big);
  CU_ASSERT_STRING_EQUAL (r.small, "after");
  /* a GiB went through a pipe: memory stays flat */
  CU_ASSERT (rss1 - rss0 < 64 * 1024);
  close (l);
}

static void
test_diff_broken_pipe (void)
{
  int l = new_layer (NULL);
  int fd = openat (l, "f", O_WRONLY | O_CREAT, 0644);
  CU_ASSERT_FATAL (ftruncate (fd, 4 << 20) == 0);
  close (fd);
  int p[2];
  CU_ASSERT_FATAL (pipe (p) == 0);
  close (p[0]);
  gr_error_t err = NULL;
  CU_ASSERT (gr_archive_diff (p[1], l, GR_WHITEOUT_AUFS, &err) < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), EPIPE);
  gr_error_release (&err);
  close (p[1]);
  close (l);
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  setlocale (LC_ALL, "C.UTF-8");
  signal (SIGPIPE, SIG_IGN);
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 2;
  CU_pSuite s = CU_add_suite ("archive-diff", unit_sandbox_setup, teardown);
  CU_add_test (s, "aufs layer: every file type, links, xattrs, names, internals", test_diff_aufs);
  CU_add_test (s, "overlay layer: whiteouts and opaque dirs converted", test_diff_overlay);
  CU_add_test (s, "empty layer and end blocks", test_diff_empty);
  CU_add_test (s, "a tree deeper than the fd limit", test_diff_deep);
  CU_add_test (s, "a GiB file streams through a pipe", test_diff_streams);
  CU_add_test (s, "a closed reader is an EPIPE error", test_diff_broken_pipe);
  return unit_run ();
}

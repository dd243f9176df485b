#include "config.h"

#include "archive.h"
#include "fsutil.h"
#include "unit.h"
#include "whiteout.h"

#include <sys/resource.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static int dir_no;

static int
new_dir (void)
{
  char *name = xasprintf ("d%d", dir_no++);
  CU_ASSERT_FATAL (mkdirat (unit_sandbox_fd, name, 0755) == 0);
  int fd = openat (unit_sandbox_fd, name, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_FATAL (fd >= 0);
  free (name);
  return fd;
}

static void
mkdir_mode (int dirfd, const char *name, mode_t mode)
{
  CU_ASSERT_FATAL (mkdirat (dirfd, name, 0700) == 0);
  CU_ASSERT_FATAL (fchmodat (dirfd, name, mode, 0) == 0);
}

static void
put (int dirfd, const char *name, const char *content)
{
  int fd = openat (dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  CU_ASSERT_FATAL (fd >= 0);
  CU_ASSERT_FATAL (write (fd, content, strlen (content)) == (ssize_t)strlen (content));
  close (fd);
}

static void
set_mtime (int dirfd, const char *name, time_t sec, long nsec)
{
  struct timespec ts[2] = { { sec, nsec }, { sec, nsec } };
  CU_ASSERT_FATAL (utimensat (dirfd, name, ts, AT_SYMLINK_NOFOLLOW) == 0);
}

/* The change list as "C /a\nA /b\n..." lines.  */
static char *
render (json_t *list)
{
  struct gr_buf b = { 0 };
  gr_buf_puts (&b, "");
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
  {
    CU_ASSERT_EQUAL (json_object_size (v), 2);
    json_t *p = json_object_get (v, "Path");
    json_t *k = json_object_get (v, "Kind");
    CU_ASSERT_FATAL (json_is_string (p) && json_is_integer (k));
    json_int_t kind = json_integer_value (k);
    CU_ASSERT (kind >= 0 && kind <= 2);
    gr_buf_printf (&b, "%c %s\n", "CAD"[kind % 3], json_string_value (p));
  }
  return gr_buf_steal (&b);
}

static void
check (int layer, const int *lowers, size_t n, enum gr_whiteout_format f, const char *want)
{
  json_t *list = NULL;
  ASSERT_OK (gr_archive_changes_merged (&list, layer, lowers, n, f, err_));
  char *got = render (list);
  if (strcmp (got, want) != 0)
    fprintf (stderr, "\n--- got\n%s--- want\n%s", got, want);
  CU_ASSERT_STRING_EQUAL (got, want);
  free (got);
  json_decref (list);
}

/* aufs layers as the plugin keeps them: the internals at the root are no
   part of the tree (aufs hides them in its mount), a nested opaque marker
   hides the lower entries, names that are not UTF-8 are listed with
   U+FFFD, and only what differs from the nearest lower that has it counts
   (a directory's mtime never does, a whole-second mtime matches any
   nanoseconds: statDifferent and sameFsTimeSpec).  */
static void
test_changes_aufs (void)
{
  int base = new_dir (), mid = new_dir (), up = new_dir ();

  /* base layer */
  mkdir_mode (base, "etc", 0755);
  put (base, "etc/passwd", "root");
  put (base, "etc/old", "old");
  mkdir_mode (base, "usr", 0755);
  mkdir_mode (base, "usr/bin", 0755);
  put (base, "usr/bin/tool", "t");
  mkdir_mode (base, "gone", 0755);
  put (base, "gone/x", "x");
  put (base, "gone\xfe", "not UTF-8");
  mkdir_mode (base, "same", 0755);
  mkdir_mode (base, "opq", 0755);
  put (base, "opq/hidden", "h");
  CU_ASSERT_FATAL (symlinkat ("/etc", base, "data") == 0);
  CU_ASSERT_FATAL (symlinkat ("/nowhere", base, "dangling") == 0);
  set_mtime (base, "etc", 1000, 0);
  set_mtime (base, "usr", 1000, 0);
  set_mtime (base, "usr/bin", 1000, 0);
  set_mtime (base, "usr/bin/tool", 1000, 5); /* upper has 1000.0: the same to moby */
  set_mtime (base, "same", 1000, 0);
  set_mtime (base, "opq", 1000, 0);

  /* middle layer: only /etc/hosts */
  mkdir_mode (mid, "etc", 0755);
  put (mid, "etc/hosts", "h");
  set_mtime (mid, "etc", 1000, 0);

  /* the layer itself */
  put (up, ".wh..wh.aufs", "");
  mkdir_mode (up, ".wh..wh.plnk", 0700);
  put (up, ".wh..wh.plnk/1.2", "p");
  put (up, ".wh.gone", "");
  put (up, ".wh.gone\xfe", "");
  put (up, "bad\xff", "b");
  put (up, "dangling", "now a file");
  put (up, "data", "was a symlink to a dir");
  mkdir_mode (up, "etc", 0755);
  put (up, "etc/.wh.old", "");
  put (up, "etc/hosts", "changed");
  put (up, "etc/new", "n");
  put (up, "etc/passwd", "changed");
  mkdir_mode (up, "new-dir", 0755);
  put (up, "new-dir/f", "f");
  mkdir_mode (up, "opq", 0755);
  put (up, "opq/.wh..wh..opq", "");
  mkdir_mode (up, "same", 0755); /* copied up, another mtime */
  mkdir_mode (up, "usr", 0700);
  mkdir_mode (up, "usr/bin", 0755);
  put (up, "usr/bin/tool", "t"); /* copied up, unchanged */
  put (up, "usr/bin/tool2", "t2");
  set_mtime (up, "etc", 1000, 0);
  set_mtime (up, "same", 2000, 0);
  set_mtime (up, "usr/bin", 1000, 0);
  set_mtime (up, "usr/bin/tool", 1000, 0);
  set_mtime (up, "opq", 2000, 0);

  int lowers[] = { mid, base };
  check (up, lowers, 2, GR_WHITEOUT_AUFS,
         "A /bad\xef\xbf\xbd\n"
         "C /dangling\n"
         "C /data\n"
         "C /etc\n"
         "C /etc/hosts\n"
         "A /etc/new\n"
         "C /etc/passwd\n"
         "D /etc/old\n"
         "A /new-dir\n"
         "A /new-dir/f\n"
         "C /opq\n"
         "D /opq/hidden\n"
         "C /usr\n"
         "C /usr/bin\n"
         "A /usr/bin/tool2\n"
         "D /gone\n"
         "D /gone\xef\xbf\xbd\n");

  /* over the middle layer alone: what only the base had is an Add, and
     whiteouts of what is not there are no change */
  int only_mid[] = { mid };
  check (up, only_mid, 1, GR_WHITEOUT_AUFS,
         "A /bad\xef\xbf\xbd\n"
         "A /dangling\n"
         "A /data\n"
         "C /etc\n"
         "C /etc/hosts\n"
         "A /etc/new\n"
         "A /etc/passwd\n"
         "A /new-dir\n"
         "A /new-dir/f\n"
         "A /opq\n"
         "A /same\n"
         "A /usr\n"
         "A /usr/bin\n"
         "A /usr/bin/tool\n"
         "A /usr/bin/tool2\n");

  close (base);
  close (mid);
  close (up);
}

/* Overlay layers: a char device 0/0 is a whiteout, any other device node
   an entry, and an opaque directory hides the lower entries; read as aufs,
   the same nodes and xattr are plain entries and metadata.  */
static void
test_changes_overlay (void)
{
  int base = new_dir (), up = new_dir ();

  mkdir_mode (base, "etc", 0755);
  put (base, "etc/old", "old");
  mkdir_mode (base, "o", 0755);
  put (base, "o/hidden", "h");
  put (base, "w", "w");
  set_mtime (base, "etc", 1000, 0);

  mkdir_mode (up, "etc", 0755);
  CU_ASSERT_FATAL (mknodat (up, "etc/old", S_IFCHR, makedev (0, 0)) == 0);
  mkdir_mode (up, "o", 0755);
  char *p = xasprintf ("/proc/self/fd/%d/o", up);
  CU_ASSERT_FATAL (setxattr (p, "trusted.overlay.opaque", "y", 1, 0) == 0);
  free (p);
  put (up, "o/n", "n");
  CU_ASSERT_FATAL (mknodat (up, "w", S_IFCHR, makedev (0, 0)) == 0);
  CU_ASSERT_FATAL (mknodat (up, "x", S_IFCHR | 0600, makedev (1, 3)) == 0);
  set_mtime (up, "etc", 1000, 0);

  int lowers[] = { base };
  check (up, lowers, 1, GR_WHITEOUT_OVERLAY,
         "C /etc\n"
         "D /etc/old\n"
         "C /o\n"
         "A /o/n\n"
         "D /o/hidden\n"
         "A /x\n"
         "D /w\n");

  /* read as aufs, the device nodes are plain entries */
  check (up, lowers, 1, GR_WHITEOUT_AUFS,
         "C /etc\n"
         "C /etc/old\n"
         "C /o\n"
         "A /o/n\n"
         "C /w\n"
         "A /x\n");

  close (base);
  close (up);
}

/* A lower's symlinks are compared, never followed (ChangesDirs lstats):
   where the layer has a directory and the lower a file or a symlink (even
   to one of its directories), the directory is a Modify and all below it
   Adds; a symlink loop replaced by a file is a Modify.  */
static void
test_changes_lower_not_dir (void)
{
  int base = new_dir (), up = new_dir ();
  put (base, "x", "a file below");
  CU_ASSERT_FATAL (symlinkat ("loop", base, "loop") == 0);
  mkdir_mode (base, "etc", 0755);
  put (base, "etc/passwd", "root");
  CU_ASSERT_FATAL (symlinkat ("etc", base, "s") == 0);
  mkdir_mode (up, "x", 0755);
  put (up, "x/child", "c");
  put (up, "loop", "no longer a loop");
  mkdir_mode (up, "s", 0755);
  put (up, "s/passwd", "root");

  int lowers[] = { base };
  check (up, lowers, 1, GR_WHITEOUT_AUFS,
         "C /loop\n"
         "C /s\n"
         "A /s/passwd\n"
         "C /x\n"
         "A /x/child\n");
  close (base);
  close (up);
}

/* A chain of DEPTH directories "d" below DIRFD with a file "f" holding
   CONTENT at the bottom.  */
static void
deep_chain (int dirfd, int depth, const char *content)
{
  int fd = dup (dirfd);
  for (int i = 0; i < depth; i++)
    {
      CU_ASSERT_FATAL (mkdirat (fd, "d", 0755) == 0);
      int nfd = openat (fd, "d", O_RDONLY | O_DIRECTORY);
      close (fd);
      fd = nfd;
    }
  put (fd, "f", content);
  close (fd);
}

/* Changes of UP over LOWERS with at most 256 fds open.  */
static json_t *
changes_low_fds (int up, const int *lowers, size_t n)
{
  struct rlimit old, low;
  CU_ASSERT_FATAL (getrlimit (RLIMIT_NOFILE, &old) == 0);
  low = old;
  low.rlim_cur = 256;
  CU_ASSERT_FATAL (setrlimit (RLIMIT_NOFILE, &low) == 0);
  json_t *list = NULL;
  gr_error_t err = NULL;
  int r = gr_archive_changes_merged (&list, up, lowers, n, GR_WHITEOUT_AUFS, &err);
  CU_ASSERT_FATAL (setrlimit (RLIMIT_NOFILE, &old) == 0);
  if (r < 0)
    fprintf (stderr, "\n%s\n", gr_error_msg (&err));
  CU_ASSERT_FATAL (r >= 0);
  return list;
}

static void
test_changes_deep (void)
{
  const int depth = 1500;
  int base = new_dir (), up = new_dir ();
  deep_chain (base, depth, "a");
  deep_chain (up, depth, "bb");

  /* alone, every directory and the file are Adds */
  json_t *list = changes_low_fds (up, NULL, 0);
  CU_ASSERT_EQUAL (json_array_size (list), (size_t)depth + 1);
  json_t *last = json_array_get (list, depth);
  const char *p = json_string_value (json_object_get (last, "Path"));
  CU_ASSERT (p && strlen (p) == (size_t)depth * 2 + 2 && strcmp (p + depth * 2, "/f") == 0);
  CU_ASSERT (json_integer_value (json_object_get (last, "Kind")) == GR_CHANGE_ADD);
  json_decref (list);

  /* over the same chain with another file: the file is a Modify, and so
     is each directory above it */
  int lowers[] = { base };
  list = changes_low_fds (up, lowers, 1);
  CU_ASSERT_EQUAL (json_array_size (list), (size_t)depth + 1);
  size_t i;
  json_t *v;
  json_array_foreach (list, i, v)
  {
    p = json_string_value (json_object_get (v, "Path"));
    CU_ASSERT (p && strlen (p) == 2 * (i + 1) && p[2 * i + 1] == (i < (size_t)depth ? 'd' : 'f'));
    CU_ASSERT (json_integer_value (json_object_get (v, "Kind")) == GR_CHANGE_MODIFY);
  }
  json_decref (list);
  close (base);
  close (up);
}

static void
whiteout (int dirfd, const char *dir, const char *name, enum gr_whiteout_format f)
{
  int d = openat (dirfd, dir, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_FATAL (d >= 0);
  ASSERT_OK (gr_whiteout_create (d, name, f, err_));
  close (d);
}

static void
opaque (int dirfd, const char *dir, enum gr_whiteout_format f)
{
  int d = openat (dirfd, dir, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_FATAL (d >= 0);
  ASSERT_OK (gr_whiteout_make_opaque (d, f, err_));
  close (d);
}

/* gr_archive_changes_merged gives what dockerd 20.10's overlay2 `docker
   diff` gave for these very layers (checked against a real dockerd), in
   walk order, whatever the whiteout encoding.  */
static void
check_merged (enum gr_whiteout_format f)
{
  int base = new_dir (), l2 = new_dir (), up = new_dir ();
  static const unsigned char cap[20] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x04 };

  mkdir_mode (base, "etc", 0755);
  put (base, "etc/passwd", "root");
  put (base, "etc/group", "g");
  set_mtime (base, "etc/group", 1500000000, 0);
  mkdir_mode (base, "usr", 0755);
  mkdir_mode (base, "usr/bin", 0755);
  put (base, "usr/bin/a", "a");
  put (base, "usr/bin/b", "b");
  mkdir_mode (base, "usr/share", 0755);
  mkdir_mode (base, "usr/share/doc", 0755);
  mkdir_mode (base, "usr/share/doc/x", 0755);
  mkdir_mode (base, "usr/share/doc/y", 0755);
  put (base, "usr/share/doc/x/f", "x");
  mkdir_mode (base, "opq", 0755);
  put (base, "opq/h1", "1");
  put (base, "opq/h2", "2");
  mkdir_mode (base, "keep", 0755);
  put (base, "keep/k", "k");
  set_mtime (base, "keep/k", 1500000000, 0);
  mkdir_mode (base, "dir-to-file", 0755);
  mkdir_mode (base, "del-dir", 0755);
  mkdir_mode (base, "del-dir/sub", 0755);
  put (base, "file-to-dir", "f");
  put (base, "chowned", "c");
  set_mtime (base, "chowned", 1500000000, 0);
  CU_ASSERT_FATAL (symlinkat ("/etc", base, "lnk") == 0);

  mkdir_mode (l2, "usr", 0755);
  mkdir_mode (l2, "usr/bin", 0755);
  whiteout (l2, "usr/bin", "b", f);
  mkdir_mode (l2, "opq", 0755);
  opaque (l2, "opq", f);
  put (l2, "opq/h3", "3");
  mkdir_mode (l2, "etc", 0755);
  put (l2, "etc/l2file", "l2");

  mkdir_mode (up, "etc", 0755);
  put (up, "etc/passwd", "root:x:0:0");
  put (up, "etc/group", "g"); /* copied up, unchanged */
  set_mtime (up, "etc/group", 1500000000, 0);
  put (up, "etc/l2file", "l2");
  CU_ASSERT_FATAL (fchmodat (up, "etc/l2file", 0600, 0) == 0);
  mkdir_mode (up, "usr", 0755);
  mkdir_mode (up, "usr/bin", 0755);
  whiteout (up, "usr/bin", "a", f);
  whiteout (up, "usr/bin", "b", f); /* already gone below: not a change */
  mkdir_mode (up, "usr/share", 0755);
  mkdir_mode (up, "usr/share/doc", 0755);
  opaque (up, "usr/share/doc", f);
  put (up, "usr/share/doc/n", "n");
  mkdir_mode (up, "opq", 0755);
  whiteout (up, "opq", "h3", f);
  mkdir_mode (up, "keep", 0755);
  put (up, "keep/k", "k");
  set_mtime (up, "keep/k", 1500000000, 0);
  char *p = xasprintf ("/proc/self/fd/%d/keep/k", up);
  CU_ASSERT_FATAL (setxattr (p, "security.capability", cap, sizeof (cap), 0) == 0);
  free (p);
  put (up, "dir-to-file", "now a file");
  mkdir_mode (up, "file-to-dir", 0755);
  put (up, "file-to-dir/f", "f");
  whiteout (up, ".", "del-dir", f);
  mkdir_mode (up, "new-dir", 0755);
  put (up, "new-dir/a", "a");
  put (up, "chowned", "c");
  CU_ASSERT_FATAL (fchownat (up, "chowned", 5, 5, 0) == 0);
  set_mtime (up, "chowned", 1500000000, 0);

  int lowers[] = { l2, base };
  check (up, lowers, 2, f,
         "C /chowned\n"
         "C /dir-to-file\n"
         "C /etc\n"
         "C /etc/l2file\n"
         "C /etc/passwd\n"
         "C /file-to-dir\n"
         "A /file-to-dir/f\n"
         "C /keep\n"
         "C /keep/k\n"
         "A /new-dir\n"
         "A /new-dir/a\n"
         "C /opq\n"
         "D /opq/h3\n"
         "C /usr\n"
         "C /usr/bin\n"
         "D /usr/bin/a\n"
         "C /usr/share\n"
         "C /usr/share/doc\n"
         "A /usr/share/doc/n\n"
         "D /usr/share/doc/x\n"
         "D /usr/share/doc/y\n"
         "D /del-dir\n");

  /* no lowers: everything is an Add, whiteouts hide nothing */
  json_t *list = NULL;
  ASSERT_OK (gr_archive_changes_merged (&list, up, NULL, 0, f, err_));
  char *got = render (list);
  CU_ASSERT (strncmp (got, "A /chowned\nA /dir-to-file\nA /etc\nA /etc/group\n", 46) == 0);
  CU_ASSERT (strstr (got, "D ") == NULL);
  free (got);
  json_decref (list);

  close (base);
  close (l2);
  close (up);
}

static void
test_changes_merged_overlay (void)
{
  check_merged (GR_WHITEOUT_OVERLAY);
}

static void
test_changes_merged_aufs (void)
{
  check_merged (GR_WHITEOUT_AUFS);
}

/* An empty layer is an empty array (not null), alone or over a lower
   with entries.  */
static void
test_changes_empty (void)
{
  int base = new_dir (), up = new_dir ();
  mkdir_mode (base, "etc", 0755);
  put (base, "etc/passwd", "root");
  const int lowers[] = { base };
  for (size_t n = 0; n <= 1; n++)
    {
      json_t *list = NULL;
      ASSERT_OK (gr_archive_changes_merged (&list, up, lowers, n, GR_WHITEOUT_AUFS, err_));
      CU_ASSERT (json_is_array (list) && json_array_size (list) == 0);
      char *s = json_dumps (list, JSON_COMPACT);
      CU_ASSERT_STRING_EQUAL (s, "[]");
      free (s);
      json_decref (list);
    }
  close (base);
  close (up);
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 2;
  CU_pSuite s = CU_add_suite ("archive-changes", unit_sandbox_setup, unit_sandbox_teardown);
  CU_add_test (s, "aufs: internals, not UTF-8, copied up unchanged, opaque, two lowers", test_changes_aufs);
  CU_add_test (s, "overlay: char 0/0 vs other devices, opaque xattr; read as aufs", test_changes_overlay);
  CU_add_test (s, "a lower's file, symlink loop or dir symlink under a dir", test_changes_lower_not_dir);
  CU_add_test (s, "trees deeper than the fd limit, alone and over a lower", test_changes_deep);
  CU_add_test (s, "merged view (dockerd's naive diff), overlay encoding", test_changes_merged_overlay);
  CU_add_test (s, "merged view (dockerd's naive diff), aufs encoding", test_changes_merged_aufs);
  CU_add_test (s, "empty layer, alone and over a lower", test_changes_empty);
  return unit_run ();
}

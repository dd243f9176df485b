/* gr_archive_apply: every entry type and attribute, the three whiteout
   formats, and the hostile-tar classes (asserting both the refusal and that
   nothing outside the layer changed).  Tars are written with libarchive or,
   for what it won't write (Go-style PAX names), block by block.  */
#include "config.h"

#include "archive.h"
#include "fsutil.h"
#include "tar-build.h"
#include "unit.h"

#include <archive.h>
#include <archive_entry.h>
#include <locale.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>


/* ---- applying and checking ---- */

/* A file without the fsyncs of gr_write_file_atomic (tests write many).  */
static int
write_plain (int dfd, const char *name, const void *data, size_t len, mode_t mode, gr_error_t *err)
{
  cleanup_close int fd = openat (dfd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  if (fd < 0)
    return gr_make_error (err, errno, "create %s", name);
  return gr_write_all (fd, data, len, err);
}

/* A case directory CASE with CASE/layer (empty) and CASE/victim ("precious",
   0644) and CASE/victimdir/keep next to it.  Returns the layer fd.  */
static int
new_case (const char *name)
{
  gr_error_t err = NULL;
  cleanup_free char *layer = xasprintf ("%s/layer", name);
  cleanup_free char *victim = xasprintf ("%s/victim", name);
  cleanup_free char *keep = xasprintf ("%s/victimdir/keep", name);
  cleanup_free char *vdir = xasprintf ("%s/victimdir", name);
  if (gr_rm_rf_at (unit_sandbox_fd, name, &err) < 0 || gr_mkdir_p_at (unit_sandbox_fd, layer, 0755, &err) < 0
      || gr_mkdir_p_at (unit_sandbox_fd, vdir, 0755, &err) < 0
      || write_plain (unit_sandbox_fd, victim, "precious", 8, 0644, &err) < 0
      || write_plain (unit_sandbox_fd, keep, "keep", 4, 0644, &err) < 0)
    {
      fprintf (stderr, "%s\n", gr_error_msg (&err));
      abort ();
    }
  return openat (unit_sandbox_fd, layer, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

/* Nothing next to the layer changed.  */
static void
assert_outside_intact (const char *name)
{
  cleanup_free char *victim = xasprintf ("%s/victim", name);
  cleanup_free char *keep = xasprintf ("%s/victimdir/keep", name);
  cleanup_free char *data = NULL;
  gr_error_t err = NULL;
  CU_ASSERT_EQUAL_FATAL (gr_read_file_at (&data, NULL, unit_sandbox_fd, victim, 0, &err), 0);
  CU_ASSERT_STRING_EQUAL (data, "precious");
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (unit_sandbox_fd, victim, &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0644);
  CU_ASSERT_EQUAL (st.st_nlink, 1);
  CU_ASSERT_EQUAL (st.st_uid, 0);
  CU_ASSERT_EQUAL (fstatat (unit_sandbox_fd, keep, &st, AT_SYMLINK_NOFOLLOW), 0);
  /* exactly layer, victim, victimdir */
  cleanup_close int fd = openat (unit_sandbox_fd, name, O_RDONLY | O_DIRECTORY);
  cleanup_dir DIR *d = fdopendir (gr_steal_fd (fd));
  int n = 0;
  for (struct dirent *de; (de = readdir (d));)
    {
      if (de->d_name[0] == '.')
        continue;
      n++;
      CU_ASSERT (strcmp (de->d_name, "layer") == 0 || strcmp (de->d_name, "victim") == 0
                 || strcmp (de->d_name, "victimdir") == 0);
    }
  CU_ASSERT_EQUAL (n, 3);
  cleanup_free char *vdir = xasprintf ("%s/victimdir", name);
  cleanup_close int vfd = openat (unit_sandbox_fd, vdir, O_RDONLY | O_DIRECTORY);
  cleanup_dir DIR *vd = fdopendir (gr_steal_fd (vfd));
  n = 0;
  for (struct dirent *de; (de = readdir (vd));)
    n += de->d_name[0] != '.';
  CU_ASSERT_EQUAL (n, 1);
}

static int
apply_file (int layer, const char *tarname, enum gr_whiteout_format f, gr_error_t *err)
{
  cleanup_close int fd = openat (unit_sandbox_fd, tarname, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return gr_make_error (err, errno, "open %s", tarname);
  struct gr_apply_opts opts = { .whiteouts = f };
  return gr_archive_apply (layer, fd, &opts, err);
}

/* Apply, expecting a refusal.  */
static void
assert_refused (int layer, const char *tarname, enum gr_whiteout_format f, const char *needle)
{
  gr_error_t err = NULL;
  int r = apply_file (layer, tarname, f, &err);
  if (r >= 0)
    fprintf (stderr, "\n%s: accepted\n", tarname);
  CU_ASSERT (r < 0);
  if (r < 0 && needle && strstr (gr_error_msg (&err), needle) == NULL)
    {
      fprintf (stderr, "\n%s: error `%s` lacks `%s`\n", tarname, gr_error_msg (&err), needle);
      CU_FAIL ("unexpected error message");
    }
  gr_error_release (&err);
}

static char *
read_at (int dfd, const char *name)
{
  char *data = NULL;
  gr_error_t err = NULL;
  if (gr_read_file_at (&data, NULL, dfd, name, 0, &err) < 0)
    {
      gr_error_release (&err);
      return xstrdup ("<missing>");
    }
  return data;
}

static bool
exists_at (int dfd, const char *name)
{
  struct stat st;
  return fstatat (dfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

/* ---- tests ---- */

static void
test_types (void)
{
  struct archive *a = tar_begin ("types.tar");
  struct archive_entry *e = ent (".", AE_IFDIR, 0711);
  archive_entry_set_mtime (e, T0 + 5, 5);
  put (a, e, NULL);
  add_dir (a, "etc/", 0755);
  add_file (a, "etc/hello", 0644, "hello world\n");
  add_file (a, "etc/empty", 0600, NULL);
  add_file (a, "bin-sh", 0755, "#!/bin/sh\n");
  add_file (a, "suid", 04755, "s");
  add_dir (a, "sgid", 02775);
  add_dir (a, "tmp", 01777);
  add_dir (a, "locked", 0);
  add_file (a, "locked/inside", 0, "secret");
  add_file (a, "nomode", 0, "x");
  add_symlink (a, "abs", "/etc/hello");
  add_symlink (a, "rel", "etc/hello");
  add_symlink (a, "dangling", "/does/not/exist");
  add_hardlink (a, "etc/hello-link", "etc/hello", 0644);
  e = ent ("dev/null", AE_IFCHR, 0666);
  archive_entry_set_rdevmajor (e, 1);
  archive_entry_set_rdevminor (e, 3);
  put (a, e, NULL);
  e = ent ("dev/loop0", AE_IFBLK, 0660);
  archive_entry_set_rdevmajor (e, 7);
  archive_entry_set_rdevminor (e, 0);
  put (a, e, NULL);
  put (a, ent ("fifo", AE_IFIFO, 0640), NULL);
  e = ent ("owned", AE_IFREG, 0644);
  archive_entry_set_uid (e, 100000);
  archive_entry_set_gid (e, 200000);
  archive_entry_set_mtime (e, T0 + 1, 123456789);
  archive_entry_set_atime (e, T0 + 2, 987654321);
  put (a, e, "o");
  e = ent ("owned-link", AE_IFLNK, 0777);
  archive_entry_set_symlink (e, "owned");
  archive_entry_set_uid (e, 70000);
  archive_entry_set_gid (e, 70001);
  archive_entry_set_mtime (e, T0 + 3, 333);
  put (a, e, NULL);
  /* a directory whose time is set before children are added */
  e = ent ("timed/", AE_IFDIR, 0755);
  archive_entry_set_mtime (e, T0 - 100, 42);
  put (a, e, NULL);
  add_file (a, "timed/a", 0644, "a");
  add_dir (a, "timed/sub", 0755);
  add_file (a, "timed/sub/b", 0644, "b");
  /* xattrs: capability survives, overlay ones never come from a tar */
  static const char cap[20] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x00,
                                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
  e = ent ("ping", AE_IFREG, 04755);
  archive_entry_xattr_add_entry (e, "security.capability", cap, sizeof (cap));
  archive_entry_xattr_add_entry (e, "user.note", "hi", 2);
  archive_entry_xattr_add_entry (e, "trusted.overlay.metacopy", "", 0);
  put (a, e, "ping");
  /* a hardlink entry without xattrs (as GNU tar writes it) keeps them */
  add_hardlink (a, "ping-link", "ping", 04755);
  e = ent ("forged/", AE_IFDIR, 0755);
  archive_entry_xattr_add_entry (e, "trusted.overlay.opaque", "y", 1);
  archive_entry_xattr_add_entry (e, "trusted.overlay.redirect", "/x", 2);
  put (a, e, NULL);
  /* long names */
  char comp[256];
  memset (comp, 'n', 255);
  comp[255] = '\0';
  cleanup_free char *longname = xasprintf ("long/%s/%s", comp, comp);
  add_file (a, longname, 0644, "long");
  tar_end (a);

  cleanup_close int l = new_case ("types");
  ASSERT_OK (apply_file (l, "types.tar", GR_WHITEOUT_OVERLAY, err_));
  assert_outside_intact ("types");

  struct stat st;
  cleanup_free char *hello = read_at (l, "etc/hello");
  CU_ASSERT_STRING_EQUAL (hello, "hello world\n");
  CU_ASSERT_EQUAL (fstatat (l, "etc/empty", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT_EQUAL (st.st_size, 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0600);
  CU_ASSERT_EQUAL (fstatat (l, "bin-sh", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0755);
  CU_ASSERT_EQUAL (fstatat (l, "suid", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 04755);
  CU_ASSERT_EQUAL (fstatat (l, "sgid", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 02775);
  CU_ASSERT_EQUAL (fstatat (l, "tmp", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 01777);
  CU_ASSERT_EQUAL (fstatat (l, "locked", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0);
  CU_ASSERT_EQUAL (fstatat (l, "locked/inside", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0);
  cleanup_free char *secret = read_at (l, "locked/inside");
  CU_ASSERT_STRING_EQUAL (secret, "secret");
  CU_ASSERT_EQUAL (fstatat (l, "nomode", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0);

  char buf[256];
  ssize_t n = readlinkat (l, "abs", buf, sizeof (buf));
  CU_ASSERT (n == 10 && memcmp (buf, "/etc/hello", 10) == 0);
  n = readlinkat (l, "rel", buf, sizeof (buf));
  CU_ASSERT (n == 9 && memcmp (buf, "etc/hello", 9) == 0);
  n = readlinkat (l, "dangling", buf, sizeof (buf));
  CU_ASSERT (n == 15 && memcmp (buf, "/does/not/exist", 15) == 0);

  struct stat st2;
  CU_ASSERT_EQUAL (fstatat (l, "etc/hello", &st, 0), 0);
  CU_ASSERT_EQUAL (fstatat (l, "etc/hello-link", &st2, 0), 0);
  CU_ASSERT_EQUAL (st.st_ino, st2.st_ino);
  CU_ASSERT_EQUAL (st.st_nlink, 2);

  CU_ASSERT_EQUAL (fstatat (l, "dev/null", &st, 0), 0);
  CU_ASSERT (S_ISCHR (st.st_mode));
  CU_ASSERT_EQUAL (st.st_rdev, makedev (1, 3));
  CU_ASSERT_EQUAL (st.st_mode & 07777, 0666);
  CU_ASSERT_EQUAL (fstatat (l, "dev/loop0", &st, 0), 0);
  CU_ASSERT (S_ISBLK (st.st_mode));
  CU_ASSERT_EQUAL (st.st_rdev, makedev (7, 0));
  /* an implicit parent: 0777 less the umask as dockerd's Untar (aufs,
     overlay2) */
  CU_ASSERT_EQUAL (fstatat (l, "dev", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0755);
  {
    /* 0600 as UnpackLayer (vfs), or what the caller asks for */
    cleanup_close int ld = new_case ("types-delete");
    ASSERT_OK (apply_file (ld, "types.tar", GR_WHITEOUT_DELETE, err_));
    CU_ASSERT_EQUAL (fstatat (ld, "dev", &st, 0), 0);
    CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0600);
    cleanup_close int lm = new_case ("types-mode");
    struct gr_apply_opts o = { .whiteouts = GR_WHITEOUT_OVERLAY, .implicit_dir_mode = 0711 };
    cleanup_close int tfd = openat (unit_sandbox_fd, "types.tar", O_RDONLY | O_CLOEXEC);
    CU_ASSERT_FATAL (tfd >= 0);
    ASSERT_OK (gr_archive_apply (lm, tfd, &o, err_));
    CU_ASSERT_EQUAL (fstatat (lm, "dev", &st, 0), 0);
    CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0711);
  }
  CU_ASSERT_EQUAL (fstatat (l, "fifo", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFIFO | 0640);

  CU_ASSERT_EQUAL (fstatat (l, "owned", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_uid, 100000);
  CU_ASSERT_EQUAL (st.st_gid, 200000);
  CU_ASSERT_EQUAL (st.st_mtim.tv_sec, T0 + 1);
  CU_ASSERT_EQUAL (st.st_mtim.tv_nsec, 123456789);
  CU_ASSERT_EQUAL (st.st_atim.tv_sec, T0 + 2);
  CU_ASSERT_EQUAL (st.st_atim.tv_nsec, 987654321);
  CU_ASSERT_EQUAL (fstatat (l, "owned-link", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISLNK (st.st_mode));
  CU_ASSERT_EQUAL (st.st_uid, 70000);
  CU_ASSERT_EQUAL (st.st_gid, 70001);
  CU_ASSERT_EQUAL (st.st_mtim.tv_sec, T0 + 3);
  CU_ASSERT_EQUAL (st.st_mtim.tv_nsec, 333);
  /* the symlink's target kept its own owner and time */
  CU_ASSERT_EQUAL (fstatat (l, "owned", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_uid, 100000);
  CU_ASSERT_EQUAL (st.st_mtim.tv_sec, T0 + 1);

  CU_ASSERT_EQUAL (fstatat (l, "timed", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mtim.tv_sec, T0 - 100);
  CU_ASSERT_EQUAL (st.st_mtim.tv_nsec, 42);
  CU_ASSERT_EQUAL (fstatat (l, "timed/sub", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mtim.tv_sec, T0);
  CU_ASSERT_EQUAL (fstat (l, &st), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0711);
  CU_ASSERT_EQUAL (st.st_mtim.tv_sec, T0 + 5);
  CU_ASSERT_EQUAL (st.st_mtim.tv_nsec, 5);

  char v[64];
  cleanup_close int ping = openat (l, "ping", O_RDONLY);
  CU_ASSERT_EQUAL (fgetxattr (ping, "security.capability", v, sizeof (v)), (ssize_t) sizeof (cap));
  CU_ASSERT (memcmp (v, cap, sizeof (cap)) == 0);
  CU_ASSERT_EQUAL (fgetxattr (ping, "user.note", v, sizeof (v)), 2);
  CU_ASSERT_EQUAL (fgetxattr (ping, "trusted.overlay.metacopy", v, sizeof (v)), -1);
  CU_ASSERT_EQUAL (fstat (ping, &st), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 04755); /* setuid kept next to the capability */
  cleanup_close int ping_link = openat (l, "ping-link", O_RDONLY);
  CU_ASSERT_EQUAL (fgetxattr (ping_link, "security.capability", v, sizeof (v)), (ssize_t) sizeof (cap));
  CU_ASSERT_EQUAL (fstat (ping_link, &st), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 04755);
  CU_ASSERT_EQUAL (st.st_nlink, 2);
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (l, "forged"));
  cleanup_close int forged = openat (l, "forged", O_RDONLY | O_DIRECTORY);
  CU_ASSERT_EQUAL (fgetxattr (forged, "trusted.overlay.redirect", v, sizeof (v)), -1);

  cleanup_free char *lng = read_at (l, longname);
  CU_ASSERT_STRING_EQUAL (lng, "long");
}

/* Go's archive/tar puts non-ASCII names raw in PAX `path` records (no
   hdrcharset): they must land byte for byte, whatever the locale.  */
static void
check_raw_names (const char *case_name)
{
  static const char nfc[] = "caf\xc3\xa9";        /* é precomposed */
  static const char nfd[] = "cafe\xcc\x81";       /* e + combining acute */
  static const char latin1[] = "caf\xe9";         /* not UTF-8 */
  static const char ustar_raw[] = "raw-\xff\xfe"; /* not UTF-8, in the ustar header */
  static const char link_raw[] = "lnk-\xe9";
  struct raw r = { { 0 } };
  const char *pax_names[] = { nfc, nfd, latin1 };
  for (int i = 0; i < 3; i++)
    {
      struct gr_buf p = { 0 };
      pax_record (&p, "path", pax_names[i], strlen (pax_names[i]));
      raw_pax (&r, &p);
      gr_buf_free (&p);
      raw_header (&r, "placeholder", '0', 1, NULL);
      raw_data (&r, &"abc"[i], 1);
    }
  raw_header (&r, ustar_raw, '0', 0, NULL);
  /* a symlink whose target is non-UTF-8, in PAX linkpath */
  struct gr_buf p = { 0 };
  pax_record (&p, "path", link_raw, strlen (link_raw));
  pax_record (&p, "linkpath", latin1, strlen (latin1));
  raw_pax (&r, &p);
  gr_buf_free (&p);
  raw_header (&r, "placeholder", '2', 0, "placeholder");
  cleanup_free char *tarname = xasprintf ("%s.tar", case_name);
  raw_end (&r, tarname);

  cleanup_close int l = new_case (case_name);
  ASSERT_OK (apply_file (l, tarname, GR_WHITEOUT_OVERLAY, err_));
  cleanup_free char *a = read_at (l, nfc);
  cleanup_free char *b = read_at (l, nfd);
  cleanup_free char *c = read_at (l, latin1);
  CU_ASSERT_STRING_EQUAL (a, "a");
  CU_ASSERT_STRING_EQUAL (b, "b");
  CU_ASSERT_STRING_EQUAL (c, "c");
  CU_ASSERT (exists_at (l, ustar_raw));
  char buf[64];
  ssize_t n = readlinkat (l, link_raw, buf, sizeof (buf));
  CU_ASSERT (n == 4 && memcmp (buf, latin1, 4) == 0);
  /* nothing else: no mangled copies */
  cleanup_close int fd = dup (l);
  cleanup_dir DIR *d = fdopendir (gr_steal_fd (fd));
  int count = 0;
  for (struct dirent *de; (de = readdir (d));)
    count += de->d_name[0] != '.';
  CU_ASSERT_EQUAL (count, 5);
  assert_outside_intact (case_name);
}

static void
test_raw_names (void)
{
  check_raw_names ("names-c");
  /* the process locale must not matter (libarchive would NFC-normalise
     and replace invalid bytes in a UTF-8 locale) */
  if (setlocale (LC_ALL, "C.UTF-8") == NULL)
    {
      fprintf (stderr, "no C.UTF-8 locale\n");
      return;
    }
  check_raw_names ("names-utf8");
  setlocale (LC_ALL, "C");
}

struct par
{
  int layer;
  int fd;
  int ret;
};

static void *
par_apply (void *arg)
{
  struct par *p = arg;
  gr_error_t err = NULL;
  struct gr_apply_opts opts = { .whiteouts = GR_WHITEOUT_DELETE };
  p->ret = gr_archive_apply (p->layer, p->fd, &opts, &err);
  if (p->ret < 0)
    fprintf (stderr, "\nparallel apply: %s\n", gr_error_msg (&err));
  gr_error_release (&err);
  return NULL;
}

/* Several applies at once (dockerd pulls 3 layers in parallel), in a
   process whose locale is UTF-8: each keeps its names raw.  */
static void
test_parallel (void)
{
  check_raw_names ("names-par"); /* writes names-par.tar */
  if (setlocale (LC_ALL, "C.UTF-8") == NULL)
    fprintf (stderr, "no C.UTF-8 locale\n");
  enum { N = 6 };
  struct par ps[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++)
    {
      cleanup_free char *cn = xasprintf ("par-%d", i);
      ps[i].layer = new_case (cn);
      ps[i].fd = openat (unit_sandbox_fd, "names-par.tar", O_RDONLY | O_CLOEXEC);
      CU_ASSERT_FATAL (ps[i].layer >= 0 && ps[i].fd >= 0);
    }
  for (int i = 0; i < N; i++)
    CU_ASSERT_FATAL (pthread_create (&th[i], NULL, par_apply, &ps[i]) == 0);
  for (int i = 0; i < N; i++)
    {
      pthread_join (th[i], NULL);
      CU_ASSERT_EQUAL (ps[i].ret, 0);
      cleanup_free char *nfd = read_at (ps[i].layer, "cafe\xcc\x81");
      cleanup_free char *latin = read_at (ps[i].layer, "caf\xe9");
      CU_ASSERT_STRING_EQUAL (nfd, "b");
      CU_ASSERT_STRING_EQUAL (latin, "c");
      close (ps[i].layer);
      close (ps[i].fd);
    }
  /* the process locale is untouched */
  CU_ASSERT (strcmp (setlocale (LC_CTYPE, NULL), "C.UTF-8") == 0);
  setlocale (LC_ALL, "C");
}

/* SCHILY.xattr with a binary value (NUL bytes), as Go writes it.  */
static void
test_schily_xattr (void)
{
  static const char cap[20] = { 0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00,
                                0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00 };
  struct raw r = { { 0 } };
  struct gr_buf p = { 0 };
  pax_record (&p, "SCHILY.xattr.security.capability", cap, sizeof (cap));
  pax_record (&p, "SCHILY.xattr.trusted.overlay.opaque", "y", 1);
  raw_pax (&r, &p);
  gr_buf_free (&p);
  raw_header (&r, "bin", '0', 0, NULL);
  p = (struct gr_buf){ 0 };
  pax_record (&p, "SCHILY.xattr.trusted.overlay.opaque", "y", 1);
  raw_pax (&r, &p);
  gr_buf_free (&p);
  raw_header (&r, "d/", '5', 0, NULL);
  raw_end (&r, "schily.tar");
  cleanup_close int l = new_case ("schily");
  ASSERT_OK (apply_file (l, "schily.tar", GR_WHITEOUT_OVERLAY, err_));
  char v[64];
  cleanup_free char *path = xasprintf ("%s/schily/layer/bin", unit_sandbox);
  CU_ASSERT_EQUAL (lgetxattr (path, "security.capability", v, sizeof (v)), (ssize_t) sizeof (cap));
  CU_ASSERT (memcmp (v, cap, sizeof (cap)) == 0);
  CU_ASSERT_EQUAL (lgetxattr (path, "trusted.overlay.opaque", v, sizeof (v)), -1);
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (l, "d"));
}

/* GNU extensions as Go and GNU tar write them: base-256 ids, ././@LongLink
   names (raw bytes).  Oversized and endless extension headers are refused.  */
static void
test_gnu_and_limits (void)
{
  struct raw r = { { 0 } };
  /* base-256 uid 3000000 */
  raw_header (&r, "big-uid", '0', 0, NULL);
  char *h = r.b.data + r.b.len - 512;
  memset (h + 108, 0, 8);
  h[108] = (char) 0x80;
  h[113] = (char) ((3000000 >> 16) & 0xff);
  h[114] = (char) ((3000000 >> 8) & 0xff);
  h[115] = (char) (3000000 & 0xff);
  memset (h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += (unsigned char) h[i];
  snprintf (h + 148, 8, "%06o", sum);
  /* a 300-byte GNU long name with a non-UTF-8 byte */
  char longname[301];
  memset (longname, 'L', 300);
  longname[150] = '/';
  longname[299] = (char) 0xe9;
  longname[300] = '\0';
  raw_header (&r, "././@LongLink", 'L', 301, NULL);
  raw_data (&r, longname, 301);
  raw_header (&r, "truncated-name", '0', 2, NULL);
  raw_data (&r, "LL", 2);
  raw_end (&r, "gnu.tar");
  cleanup_close int l = new_case ("gnu");
  ASSERT_OK (apply_file (l, "gnu.tar", GR_WHITEOUT_OVERLAY, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (l, "big-uid", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_uid, 3000000);
  cleanup_free char *ll = read_at (l, longname);
  CU_ASSERT_STRING_EQUAL (ll, "LL");
  CU_ASSERT (! exists_at (l, "truncated-name"));

  /* a 2 MiB PAX header */
  struct raw r2 = { { 0 } };
  struct gr_buf p = { 0 };
  char *junk = xmalloc (2 << 20);
  memset (junk, 'j', 2 << 20);
  pax_record (&p, "comment", junk, 2 << 20);
  free (junk);
  raw_pax (&r2, &p);
  gr_buf_free (&p);
  raw_header (&r2, "f", '0', 0, NULL);
  raw_end (&r2, "bigpax.tar");
  cleanup_close int l2 = new_case ("bigpax");
  assert_refused (l2, "bigpax.tar", GR_WHITEOUT_OVERLAY, "too large");
  assert_outside_intact ("bigpax");

  /* an endless chain of extension headers */
  struct raw r3 = { { 0 } };
  for (int i = 0; i < 40; i++)
    {
      p = (struct gr_buf){ 0 };
      pax_record (&p, "comment", "x", 1);
      raw_pax (&r3, &p);
      gr_buf_free (&p);
    }
  raw_header (&r3, "f", '0', 0, NULL);
  raw_end (&r3, "chain.tar");
  cleanup_close int l3 = new_case ("chain");
  assert_refused (l3, "chain.tar", GR_WHITEOUT_OVERLAY, "layer tar");
}

/* The same whiteout tar in the three formats.  */
static void
make_whiteout_tar (void)
{
  struct archive *a = tar_begin ("wh.tar");
  add_dir (a, "a/", 0755);
  add_file (a, "a/f", 0644, "f");
  put (a, ent ("a/.wh.g", AE_IFREG, 0644), NULL);
  add_dir (a, "b/", 0755);
  add_file (a, "b/#early", 0644, "early"); /* sorts before .wh..wh..opq */
  put (a, ent ("b/.wh..wh..opq", AE_IFREG, 0644), NULL);
  add_file (a, "b/new", 0644, "new");
  add_file (a, ".wh..wh.plnk/123.456", 0644, "internal");
  put (a, ent (".wh..wh.aufs", AE_IFREG, 0644), NULL);
  put (a, ent ("c/.wh..wh.orph", AE_IFDIR, 0755), NULL);
  put (a, ent ("c/.wh.gone-c", AE_IFREG, 0644), NULL);
  tar_end (a);
}

static void
test_whiteouts_aufs (void)
{
  make_whiteout_tar ();
  cleanup_close int l = new_case ("wh-aufs");
  ASSERT_OK (apply_file (l, "wh.tar", GR_WHITEOUT_AUFS, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (l, "a/.wh.g", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISREG (st.st_mode) && st.st_size == 0);
  CU_ASSERT_EQUAL (fstatat (l, "b/.wh..wh..opq", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISREG (st.st_mode));
  CU_ASSERT (exists_at (l, "b/#early"));
  CU_ASSERT (exists_at (l, "b/new"));
  CU_ASSERT (exists_at (l, "c/.wh.gone-c"));
  CU_ASSERT (! exists_at (l, "a/g"));
  CU_ASSERT (! exists_at (l, ".wh..wh.plnk"));
  CU_ASSERT (! exists_at (l, ".wh..wh.aufs"));
  CU_ASSERT (! exists_at (l, "c/.wh..wh.orph"));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (l, "b"));
  assert_outside_intact ("wh-aufs");
}

static void
test_whiteouts_overlay (void)
{
  make_whiteout_tar ();
  cleanup_close int l = new_case ("wh-ovl");
  ASSERT_OK (apply_file (l, "wh.tar", GR_WHITEOUT_OVERLAY, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (l, "a/g", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (gr_whiteout_is_overlay_file (&st));
  CU_ASSERT_EQUAL (fstatat (l, "c/gone-c", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (gr_whiteout_is_overlay_file (&st));
  CU_ASSERT (! exists_at (l, "a/.wh.g"));
  CU_ASSERT (! exists_at (l, "b/.wh..wh..opq"));
  CU_ASSERT (gr_whiteout_is_overlay_opaque (l, "b"));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (l, "a"));
  CU_ASSERT (exists_at (l, "b/#early"));
  CU_ASSERT (exists_at (l, "b/new"));
  CU_ASSERT (exists_at (l, "a/f"));
  CU_ASSERT (! exists_at (l, ".wh..wh.plnk"));
  CU_ASSERT (! exists_at (l, ".wh..wh.aufs"));
  assert_outside_intact ("wh-ovl");
}

static void
test_whiteouts_delete (void)
{
  make_whiteout_tar ();
  cleanup_close int l = new_case ("wh-del");
  /* the layer is a copy of its parent */
  ASSERT_OK (gr_mkdir_p_at (l, "a", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (l, "a/g", "g", 1, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (l, "a/h", "h", 1, 0644, err_));
  ASSERT_OK (gr_mkdir_p_at (l, "b/olddir/deep", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (l, "b/old", "old", 3, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (l, "b/new", "stale", 5, 0644, err_));
  ASSERT_OK (gr_mkdir_p_at (l, "c/gone-c/sub", 0755, err_));
  ASSERT_OK (apply_file (l, "wh.tar", GR_WHITEOUT_DELETE, err_));
  CU_ASSERT (! exists_at (l, "a/g"));
  CU_ASSERT (exists_at (l, "a/h"));
  CU_ASSERT (exists_at (l, "a/f"));
  CU_ASSERT (! exists_at (l, "b/old"));
  CU_ASSERT (! exists_at (l, "b/olddir"));
  CU_ASSERT (exists_at (l, "b/#early")); /* from this tar: kept */
  cleanup_free char *nw = read_at (l, "b/new");
  CU_ASSERT_STRING_EQUAL (nw, "new");
  CU_ASSERT (! exists_at (l, "c/gone-c"));
  CU_ASSERT (exists_at (l, "c"));
  CU_ASSERT (! exists_at (l, "a/.wh.g"));
  CU_ASSERT (! exists_at (l, "b/.wh..wh..opq"));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (l, "b"));
  CU_ASSERT (! exists_at (l, ".wh..wh.plnk"));
  assert_outside_intact ("wh-del");
}

/* A whiteout then the same name again later in the same tar.  */
static void
test_recreated_after_whiteout (void)
{
  struct archive *a = tar_begin ("recreate.tar");
  put (a, ent (".wh.d", AE_IFREG, 0644), NULL);
  add_dir (a, "d/", 0750);
  add_file (a, "d/x", 0644, "x");
  put (a, ent (".wh.f", AE_IFREG, 0644), NULL);
  add_file (a, "f", 0644, "new f");
  tar_end (a);

  cleanup_close int o = new_case ("recreate-ovl");
  ASSERT_OK (apply_file (o, "recreate.tar", GR_WHITEOUT_OVERLAY, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (o, "d", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0750);
  CU_ASSERT (gr_whiteout_is_overlay_opaque (o, "d")); /* lower d must not show through */
  CU_ASSERT (exists_at (o, "d/x"));
  cleanup_free char *f = read_at (o, "f");
  CU_ASSERT_STRING_EQUAL (f, "new f");

  cleanup_close int v = new_case ("recreate-del");
  ASSERT_OK (gr_mkdir_p_at (v, "d/olddir", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (v, "d/old", "o", 1, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (v, "f", "old f", 5, 0644, err_));
  ASSERT_OK (apply_file (v, "recreate.tar", GR_WHITEOUT_DELETE, err_));
  CU_ASSERT (! exists_at (v, "d/old"));
  CU_ASSERT (! exists_at (v, "d/olddir"));
  CU_ASSERT (exists_at (v, "d/x"));
  cleanup_free char *f2 = read_at (v, "f");
  CU_ASSERT_STRING_EQUAL (f2, "new f");

  /* a whiteout of the directory the previous entry went into */
  a = tar_begin ("recreate2.tar");
  add_file (a, "w/a", 0644, "a");
  put (a, ent (".wh.w", AE_IFREG, 0644), NULL);
  add_file (a, "w/b", 0644, "b");
  tar_end (a);
  const enum gr_whiteout_format fs[] = { GR_WHITEOUT_DELETE, GR_WHITEOUT_OVERLAY };
  for (int i = 0; i < 2; i++)
    {
      cleanup_free char *cn = xasprintf ("recreate2-%d", i);
      cleanup_close int w = new_case (cn);
      ASSERT_OK (apply_file (w, "recreate2.tar", fs[i], err_));
      cleanup_free char *wb = read_at (w, "w/b");
      CU_ASSERT_STRING_EQUAL (wb, "b");
      CU_ASSERT (! exists_at (w, "w/a"));
      if (fs[i] == GR_WHITEOUT_OVERLAY)
        CU_ASSERT (gr_whiteout_is_overlay_opaque (w, "w"));
    }

  cleanup_close int u = new_case ("recreate-aufs");
  ASSERT_OK (apply_file (u, "recreate.tar", GR_WHITEOUT_AUFS, err_));
  CU_ASSERT (exists_at (u, ".wh.d"));
  CU_ASSERT (exists_at (u, "d/x"));
  cleanup_free char *f3 = read_at (u, "f");
  CU_ASSERT_STRING_EQUAL (f3, "new f");
}

/* Old aufs tars: hardlinks to `.wh..wh.plnk/` pseudo-links.  */
static void
test_aufs_plnk (void)
{
  struct archive *a = tar_begin ("plnk.tar");
  add_dir (a, ".wh..wh.plnk", 0700);
  add_file (a, ".wh..wh.plnk/262.1234", 0640, "shared");
  add_dir (a, "usr", 0755);
  add_hardlink (a, "usr/a", ".wh..wh.plnk/262.1234", 0640);
  add_hardlink (a, "usr/b", "./.wh..wh.plnk/262.1234", 0640);
  tar_end (a);
  const enum gr_whiteout_format fs[] = { GR_WHITEOUT_AUFS, GR_WHITEOUT_OVERLAY, GR_WHITEOUT_DELETE };
  for (int i = 0; i < 3; i++)
    {
      cleanup_free char *cn = xasprintf ("plnk-%d", i);
      cleanup_close int l = new_case (cn);
      ASSERT_OK (apply_file (l, "plnk.tar", fs[i], err_));
      cleanup_free char *ua = read_at (l, "usr/a");
      CU_ASSERT_STRING_EQUAL (ua, "shared");
      struct stat sa, sb;
      CU_ASSERT_EQUAL (fstatat (l, "usr/a", &sa, 0), 0);
      CU_ASSERT_EQUAL (fstatat (l, "usr/b", &sb, 0), 0);
      CU_ASSERT_EQUAL (sa.st_ino, sb.st_ino);
      CU_ASSERT_EQUAL (sa.st_nlink, 2);
      CU_ASSERT_EQUAL (sa.st_mode, S_IFREG | 0640);
      /* nothing of the aufs metadata, nor of the stash, stays */
      cleanup_close int fd = dup (l);
      cleanup_dir DIR *d = fdopendir (gr_steal_fd (fd));
      for (struct dirent *de; (de = readdir (d));)
        CU_ASSERT (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0
                   || strcmp (de->d_name, "usr") == 0);
      assert_outside_intact (cn);
    }
  a = tar_begin ("plnk-missing.tar");
  add_hardlink (a, "x", ".wh..wh.plnk/999.1", 0644);
  add_hardlink (a, "y", ".wh..wh.aufs", 0644);
  tar_end (a);
  cleanup_close int l = new_case ("plnk-missing");
  assert_refused (l, "plnk-missing.tar", GR_WHITEOUT_OVERLAY, "aufs hardlink");
  a = tar_begin ("plnk-meta.tar");
  add_hardlink (a, "y", ".wh..wh.aufs", 0644);
  tar_end (a);
  cleanup_close int l2 = new_case ("plnk-meta");
  assert_refused (l2, "plnk-meta.tar", GR_WHITEOUT_OVERLAY, "aufs metadata");
}

static void
test_replace (void)
{
  struct archive *a = tar_begin ("replace.tar");
  add_file (a, "f", 0644, "first");
  add_file (a, "f", 0600, "second");
  add_dir (a, "d", 0755);
  add_file (a, "d/keep", 0644, "keep");
  add_dir (a, "d", 0700); /* dir over dir: merge, new metadata */
  add_dir (a, "gone", 0755);
  add_file (a, "gone/x", 0644, "x");
  add_file (a, "gone", 0644, "now a file");
  add_file (a, "wasfile", 0644, "x");
  add_dir (a, "wasfile", 0755);
  add_file (a, "s", 0644, "x");
  add_symlink (a, "s", "/f");
  add_symlink (a, "t", "/f");
  add_file (a, "t", 0644, "t is a file"); /* not written through the symlink */
  /* a directory replaced by a symlink: later entries go through the new symlink */
  add_dir (a, "e", 0755);
  add_dir (a, "dd", 0755);
  add_file (a, "dd/a", 0644, "a");
  add_symlink (a, "dd", "/e");
  add_file (a, "dd/b", 0644, "b");
  tar_end (a);
  cleanup_close int l = new_case ("replace");
  ASSERT_OK (apply_file (l, "replace.tar", GR_WHITEOUT_OVERLAY, err_));
  cleanup_free char *f = read_at (l, "f");
  CU_ASSERT_STRING_EQUAL (f, "second");
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (l, "f", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0600);
  CU_ASSERT (exists_at (l, "d/keep"));
  CU_ASSERT_EQUAL (fstatat (l, "d", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFDIR | 0700);
  cleanup_free char *g = read_at (l, "gone");
  CU_ASSERT_STRING_EQUAL (g, "now a file");
  CU_ASSERT_EQUAL (fstatat (l, "wasfile", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISDIR (st.st_mode));
  CU_ASSERT_EQUAL (fstatat (l, "s", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISLNK (st.st_mode));
  CU_ASSERT_EQUAL (fstatat (l, "t", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISREG (st.st_mode));
  cleanup_free char *f2 = read_at (l, "f");
  CU_ASSERT_STRING_EQUAL (f2, "second");
  cleanup_free char *eb = read_at (l, "e/b");
  CU_ASSERT_STRING_EQUAL (eb, "b");
  CU_ASSERT (! exists_at (l, "e/a"));
  assert_outside_intact ("replace");
}

/* Legitimate absolute symlinks: `lib -> /usr/lib` then `lib/x`.  */
static void
test_absolute_symlink_in_root (void)
{
  cleanup_free char *abs_case = xasprintf ("%s/insym", unit_sandbox);
  struct archive *a = tar_begin ("insym.tar");
  add_dir (a, "usr/lib", 0755);
  add_symlink (a, "lib", "/usr/lib");
  add_file (a, "lib/x", 0644, "through lib");
  add_symlink (a, "up", "/../../../../..");
  add_file (a, "up/victim", 0644, "owned");
  add_symlink (a, "host", abs_case); /* the real path of the case dir */
  add_file (a, "host/victim", 0644, "owned");
  tar_end (a);
  cleanup_close int l = new_case ("insym");
  gr_error_t err = NULL;
  int r = apply_file (l, "insym.tar", GR_WHITEOUT_OVERLAY, &err);
  /* host/victim: the layer has no <unit_sandbox>/insym: created inside or refused */
  if (r < 0)
    fprintf (stderr, "\n(insym: %s)\n", gr_error_msg (&err));
  gr_error_release (&err);
  cleanup_free char *x = read_at (l, "usr/lib/x");
  CU_ASSERT_STRING_EQUAL (x, "through lib");
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (l, "lib", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISLNK (st.st_mode));
  cleanup_free char *v = read_at (l, "victim"); /* up/ resolved to the layer root */
  CU_ASSERT_STRING_EQUAL (v, "owned");
  assert_outside_intact ("insym");
}

struct hostile
{
  const char *name;
  void (*build) (struct archive *a, const char *case_path);
  enum gr_whiteout_format f;
  const char *needle; /* in the error, or NULL */
};

static void
h_dotdot (struct archive *a, const char *c GR_UNUSED)
{
  add_file (a, "../victim", 0644, "owned");
}
static void
h_dotdot_inner (struct archive *a, const char *c GR_UNUSED)
{
  add_dir (a, "a", 0755);
  add_file (a, "a/../../victim", 0644, "owned");
}
static void
h_absolute (struct archive *a, const char *c GR_UNUSED)
{
  add_file (a, "/victim", 0644, "owned");
}
static void
h_hardlink_up (struct archive *a, const char *c GR_UNUSED)
{
  add_hardlink (a, "h", "../victim", 0777);
}
static void
h_hardlink_slash_up (struct archive *a, const char *c GR_UNUSED)
{
  add_hardlink (a, "h", "/../victim", 0777);
}
static void
h_hardlink_through_symlink (struct archive *a, const char *c)
{
  add_symlink (a, "sd", c); /* absolute: resolves inside the layer */
  cleanup_free char *t = xasprintf ("sd/victim");
  add_hardlink (a, "h", t, 0777);
}
static void
h_hardlink_dir (struct archive *a, const char *c GR_UNUSED)
{
  add_dir (a, "d", 0755);
  add_hardlink (a, "h", "d", 0755);
}
static void
h_symlink_up (struct archive *a, const char *c GR_UNUSED)
{
  add_symlink (a, "lnk", "../victim");
  add_file (a, "lnk", 0644, "owned");
}
static void
h_symlink_dir_up (struct archive *a, const char *c GR_UNUSED)
{
  add_symlink (a, "lnk", "..");
  add_file (a, "lnk/victim", 0644, "owned");
}
static void
h_symlink_deep_up (struct archive *a, const char *c GR_UNUSED)
{
  add_dir (a, "a/b", 0755);
  add_symlink (a, "a/b/lnk", "../../../victimdir");
  add_file (a, "a/b/lnk/keep", 0644, "owned");
}
/* CVE-2021-32760: a hardlink to a symlink, then chmod of the hardlink.  */
static void
h_hardlink_to_symlink (struct archive *a, const char *c)
{
  cleanup_free char *victim = xasprintf ("%s/victim", c);
  add_symlink (a, "sym", victim);
  add_hardlink (a, "h", "sym", 0777);
}
static void
h_symlink_then_file (struct archive *a, const char *c)
{
  cleanup_free char *victim = xasprintf ("%s/victim", c);
  add_symlink (a, "x", victim);
  add_file (a, "x", 0777, "owned");
}
static void
h_dir_replaced_by_symlink (struct archive *a, const char *c)
{
  add_dir (a, "d", 0755);
  add_symlink (a, "d", c);
  add_file (a, "d/victim", 0644, "owned");
}
static void
h_whiteout_dotdot (struct archive *a, const char *c GR_UNUSED)
{
  put (a, ent (".wh...", AE_IFREG, 0644), NULL);
}
static void
h_whiteout_dot (struct archive *a, const char *c GR_UNUSED)
{
  put (a, ent (".wh..", AE_IFREG, 0644), NULL);
}
static void
h_whiteout_up (struct archive *a, const char *c GR_UNUSED)
{
  put (a, ent ("../.wh.victim", AE_IFREG, 0644), NULL);
}
static void
h_whiteout_abs (struct archive *a, const char *c GR_UNUSED)
{
  put (a, ent ("/.wh.victim", AE_IFREG, 0644), NULL);
}
static void
h_whiteout_through_symlink (struct archive *a, const char *c)
{
  add_symlink (a, "lnk", c);
  put (a, ent ("lnk/.wh.victim", AE_IFREG, 0644), NULL);
}
static void
h_whiteout_through_rel_symlink (struct archive *a, const char *c GR_UNUSED)
{
  add_dir (a, "a", 0755);
  add_symlink (a, "a/lnk", "..");
  put (a, ent ("a/lnk/.wh.keepme", AE_IFREG, 0644), NULL);
}
static void
h_root_not_dir (struct archive *a, const char *c GR_UNUSED)
{
  add_symlink (a, "./", "/");
}
static void
h_long_name (struct archive *a, const char *c GR_UNUSED)
{
  char *n = xmalloc (5000);
  for (int i = 0; i < 4999; i++)
    n[i] = (i % 100 == 99) ? '/' : 'a';
  n[4999] = '\0';
  add_file (a, n, 0644, "x");
  free (n);
}

static const struct hostile hostiles[] = {
  { "dotdot", h_dotdot, GR_WHITEOUT_OVERLAY, ".." },
  { "dotdot-inner", h_dotdot_inner, GR_WHITEOUT_OVERLAY, ".." },
  { "absolute", h_absolute, GR_WHITEOUT_OVERLAY, "absolute" },
  { "hardlink-up", h_hardlink_up, GR_WHITEOUT_OVERLAY, ".." },
  { "hardlink-slash-up", h_hardlink_slash_up, GR_WHITEOUT_OVERLAY, "hardlink" },
  { "hardlink-through-symlink", h_hardlink_through_symlink, GR_WHITEOUT_DELETE, "hardlink target" },
  { "hardlink-dir", h_hardlink_dir, GR_WHITEOUT_OVERLAY, "directory" },
  { "symlink-up", h_symlink_up, GR_WHITEOUT_OVERLAY, "outside" },
  { "symlink-dir-up", h_symlink_dir_up, GR_WHITEOUT_OVERLAY, "outside" },
  { "symlink-deep-up", h_symlink_deep_up, GR_WHITEOUT_OVERLAY, "outside" },
  { "whiteout-dotdot-ovl", h_whiteout_dotdot, GR_WHITEOUT_OVERLAY, "whiteout" },
  { "whiteout-dotdot-del", h_whiteout_dotdot, GR_WHITEOUT_DELETE, "whiteout" },
  { "whiteout-dotdot-aufs", h_whiteout_dotdot, GR_WHITEOUT_AUFS, "whiteout" },
  { "whiteout-dot-del", h_whiteout_dot, GR_WHITEOUT_DELETE, "whiteout" },
  { "whiteout-up-del", h_whiteout_up, GR_WHITEOUT_DELETE, ".." },
  { "whiteout-abs-del", h_whiteout_abs, GR_WHITEOUT_DELETE, "absolute" },
  { "whiteout-symlink-del", h_whiteout_through_symlink, GR_WHITEOUT_DELETE, "symlink" },
  { "whiteout-symlink-ovl", h_whiteout_through_symlink, GR_WHITEOUT_OVERLAY, "symlink" },
  { "whiteout-symlink-aufs", h_whiteout_through_symlink, GR_WHITEOUT_AUFS, "symlink" },
  { "whiteout-relsymlink-del", h_whiteout_through_rel_symlink, GR_WHITEOUT_DELETE, "symlink" },
  { "root-not-dir", h_root_not_dir, GR_WHITEOUT_OVERLAY, "root" },
  { "long-name", h_long_name, GR_WHITEOUT_OVERLAY, "long" },
};

static void
test_hostile (void)
{
  for (size_t i = 0; i < sizeof (hostiles) / sizeof (hostiles[0]); i++)
    {
      const struct hostile *h = &hostiles[i];
      cleanup_free char *case_name = xasprintf ("hostile-%s", h->name);
      cleanup_free char *case_path = xasprintf ("%s/%s", unit_sandbox, case_name);
      cleanup_free char *tarname = xasprintf ("%s.tar", case_name);
      struct archive *a = tar_begin (tarname);
      h->build (a, case_path);
      tar_end (a);
      cleanup_close int l = new_case (case_name);
      /* a file in the layer a whiteout through a symlink could reach */
      ASSERT_OK (gr_write_file_atomic (l, "keepme", "k", 1, 0644, err_));
      gr_error_t err = NULL;
      int r = apply_file (l, tarname, h->f, &err);
      if (r >= 0 || strstr (gr_error_msg (&err), h->needle) == NULL)
        {
          fprintf (stderr, "\nhostile %s: %s\n", h->name, r >= 0 ? "accepted" : gr_error_msg (&err));
          CU_FAIL ("hostile tar not refused as expected");
        }
      gr_error_release (&err);
      CU_ASSERT (exists_at (l, "keepme"));
      assert_outside_intact (case_name);
    }
}

/* Hostile tars that are contained rather than refused: the write lands in
   the layer, never outside.  */
static void
test_contained (void)
{
  static const struct
  {
    const char *name;
    void (*build) (struct archive *a, const char *case_path);
  } cases[] = {
    { "hardlink-to-symlink", h_hardlink_to_symlink },
    { "symlink-then-file", h_symlink_then_file },
    { "dir-replaced-by-symlink", h_dir_replaced_by_symlink },
  };
  for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++)
    {
      cleanup_free char *case_name = xasprintf ("contained-%s", cases[i].name);
      cleanup_free char *case_path = xasprintf ("%s/%s", unit_sandbox, case_name);
      cleanup_free char *tarname = xasprintf ("%s.tar", case_name);
      struct archive *a = tar_begin (tarname);
      cases[i].build (a, case_path);
      tar_end (a);
      cleanup_close int l = new_case (case_name);
      gr_error_t err = NULL;
      int r = apply_file (l, tarname, GR_WHITEOUT_OVERLAY, &err);
      if (r < 0)
        fprintf (stderr, "\n(contained %s: %s)\n", cases[i].name, gr_error_msg (&err));
      gr_error_release (&err);
      assert_outside_intact (case_name);
    }
  /* the hardlink is a link to the symlink itself, not to its target */
  cleanup_close int l = openat (unit_sandbox_fd, "contained-hardlink-to-symlink/layer", O_RDONLY | O_DIRECTORY);
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (l, "h", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISLNK (st.st_mode));
  CU_ASSERT_EQUAL (st.st_nlink, 2);
  cleanup_close int l2 = openat (unit_sandbox_fd, "contained-symlink-then-file/layer", O_RDONLY | O_DIRECTORY);
  CU_ASSERT_EQUAL (fstatat (l2, "x", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT_EQUAL (st.st_mode, S_IFREG | 0777);
}

static void
test_truncated_and_garbage (void)
{
  char big[100000];
  memset (big, 'z', sizeof (big) - 1);
  big[sizeof (big) - 1] = '\0';
  struct archive *a = tar_begin ("full.tar");
  add_file (a, "big", 0644, big);
  add_file (a, "after", 0644, "after");
  tar_end (a);
  cleanup_free char *full = NULL;
  size_t len = 0;
  ASSERT_OK (gr_read_file_at (&full, &len, unit_sandbox_fd, "full.tar", 0, err_));
  CU_ASSERT_FATAL (len > 60000);

  /* cut in the middle of the data */
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "cut.tar", full, 50000, 0644, err_));
  cleanup_close int l = new_case ("truncated");
  assert_refused (l, "cut.tar", GR_WHITEOUT_OVERLAY, "runcated");
  /* cut in the middle of a header */
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "cut2.tar", full, 300, 0644, err_));
  cleanup_close int l2 = new_case ("truncated2");
  assert_refused (l2, "cut2.tar", GR_WHITEOUT_OVERLAY, "layer tar");
  /* a damaged header after a good entry */
  size_t after = 0;
  for (size_t off = 512; off + 512 <= len; off += 512)
    if (memcmp (full + off, "after", 6) == 0 && memcmp (full + off + 257, "ustar", 5) == 0)
      after = off;
  CU_ASSERT_FATAL (after > 0);
  memset (full + after + 100, 'Q', 50);
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "damaged.tar", full, len, 0644, err_));
  cleanup_close int l3 = new_case ("damaged");
  assert_refused (l3, "damaged.tar", GR_WHITEOUT_OVERLAY, "layer tar");
  /* garbage */
  char junk[4096];
  memset (junk, 'A', sizeof (junk));
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "junk.tar", junk, sizeof (junk), 0644, err_));
  cleanup_close int l4 = new_case ("junk");
  assert_refused (l4, "junk.tar", GR_WHITEOUT_OVERLAY, "layer tar");
  assert_outside_intact ("junk");
  /* an empty stream is an empty layer */
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "empty.tar", "", 0, 0644, err_));
  cleanup_close int l5 = new_case ("empty");
  ASSERT_OK (apply_file (l5, "empty.tar", GR_WHITEOUT_OVERLAY, err_));
}

/* Bytes after the end blocks are read to EOF (the caller hashes them).  */
static void
test_drain (void)
{
  struct archive *a = tar_begin ("drain.tar");
  add_file (a, "f", 0644, "f");
  tar_end (a);
  cleanup_free char *tar = NULL;
  size_t len = 0;
  ASSERT_OK (gr_read_file_at (&tar, &len, unit_sandbox_fd, "drain.tar", 0, err_));
  size_t junk = 1 << 20;
  tar = xrealloc (tar, len + junk);
  memset (tar + len, 0, junk);
  memcpy (tar + len + 5000, "trailing", 8);

  /* a file: the offset ends at its size */
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "drain-junk.tar", tar, len + junk, 0644, err_));
  cleanup_close int fd = openat (unit_sandbox_fd, "drain-junk.tar", O_RDONLY);
  cleanup_close int l = new_case ("drain");
  struct gr_apply_opts opts = { .whiteouts = GR_WHITEOUT_OVERLAY };
  ASSERT_OK (gr_archive_apply (l, fd, &opts, err_));
  CU_ASSERT_EQUAL (lseek (fd, 0, SEEK_CUR), (off_t) (len + junk));
  CU_ASSERT (exists_at (l, "f"));

  /* a pipe: the writer can finish, the reader is at EOF */
  int p[2];
  CU_ASSERT_FATAL (pipe (p) == 0);
  pid_t pid = fork ();
  if (pid == 0)
    {
      close (p[0]);
      gr_error_t err = NULL;
      _exit (gr_write_all (p[1], tar, len + junk, &err) < 0 ? 1 : 0);
    }
  close (p[1]);
  cleanup_close int l2 = new_case ("drain-pipe");
  /* non-blocking, as a socket handed over by a server may be */
  fcntl (p[0], F_SETFL, O_NONBLOCK);
  ASSERT_OK (gr_archive_apply (l2, p[0], &opts, err_));
  char c;
  CU_ASSERT_EQUAL (read (p[0], &c, 1), 0);
  close (p[0]);
  int status = 0;
  waitpid (pid, &status, 0);
  CU_ASSERT (WIFEXITED (status) && WEXITSTATUS (status) == 0);
}

static void
test_sparse (void)
{
  const off_t size = 10 << 20;
  struct archive *a = tar_begin ("sparse.tar");
  struct archive_entry *e = ent ("sparse", AE_IFREG, 0644);
  archive_entry_set_size (e, size);
  archive_entry_sparse_add_entry (e, 0, 4096);
  archive_entry_sparse_add_entry (e, 8 << 20, 4096);
  CU_ASSERT_FATAL (archive_write_header (a, e) == ARCHIVE_OK);
  char block[4096];
  memset (block, 'S', sizeof (block));
  /* libarchive's writer takes the whole logical content and drops the holes */
  char zero[4096] = { 0 };
  for (off_t off = 0; off < size; off += 4096)
    {
      bool data = off == 0 || off == 8 << 20;
      CU_ASSERT_EQUAL (archive_write_data (a, data ? block : zero, 4096), 4096);
    }
  archive_entry_free (e);
  tar_end (a);
  struct stat tst;
  CU_ASSERT_EQUAL (fstatat (unit_sandbox_fd, "sparse.tar", &tst, 0), 0);
  CU_ASSERT (tst.st_size < 1 << 20); /* the writer did write it sparse */

  cleanup_close int l = new_case ("sparse");
  ASSERT_OK (apply_file (l, "sparse.tar", GR_WHITEOUT_OVERLAY, err_));
  struct stat st;
  CU_ASSERT_EQUAL_FATAL (fstatat (l, "sparse", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_size, size);
  CU_ASSERT ((off_t) st.st_blocks * 512 < 1 << 20);
  cleanup_close int fd = openat (l, "sparse", O_RDONLY);
  char buf[4096];
  CU_ASSERT_EQUAL (pread (fd, buf, sizeof (buf), 8 << 20), (ssize_t) sizeof (buf));
  CU_ASSERT (memcmp (buf, block, sizeof (buf)) == 0);
  CU_ASSERT_EQUAL (pread (fd, buf, sizeof (buf), 4 << 20), (ssize_t) sizeof (buf));
  CU_ASSERT_EQUAL (buf[0], 0);
  CU_ASSERT_EQUAL (pread (fd, buf, 1, 0), 1);
  CU_ASSERT_EQUAL (buf[0], 'S');
}

/* Random damage to the names, link names and types of a tar full of
   symlinks, hardlinks and whiteouts (checksums fixed so that libarchive
   takes the headers): whatever is accepted or refused, nothing outside the
   layer changes and nothing crashes.  */
static void
test_fuzz (void)
{
  cleanup_free char *case_path = xasprintf ("%s/fuzz", unit_sandbox);
  struct archive *a = tar_begin ("fuzz-base.tar");
  add_dir (a, "d", 0755);
  add_file (a, "d/f", 0644, "f");
  add_symlink (a, "up", "/../..");
  add_symlink (a, "host", case_path);
  add_symlink (a, "d/rel", "../d");
  add_hardlink (a, "d/h", "d/f", 0644);
  add_hardlink (a, "hs", "host", 0777);
  put (a, ent ("d/.wh.f", AE_IFREG, 0644), NULL);
  put (a, ent ("d/.wh..wh..opq", AE_IFREG, 0644), NULL);
  add_file (a, "up/x", 0644, "x");
  add_file (a, "d/rel/y", 0644, "y");
  add_dir (a, "e/g", 0755);
  tar_end (a);
  cleanup_free char *base = NULL;
  size_t len = 0;
  ASSERT_OK (gr_read_file_at (&base, &len, unit_sandbox_fd, "fuzz-base.tar", 0, err_));
  static const char alphabet[] = "../avhostwi\0";
  static const char types[] = "0125346x";
  unsigned seed = 12345;
  int accepted = 0;
  for (int iter = 0; iter < 300; iter++)
    {
      cleanup_free char *t = xmalloc (len);
      memcpy (t, base, len);
      int nmut = 1 + (int) (rand_r (&seed) % 6);
      for (int m = 0; m < nmut; m++)
        {
          size_t blk = (size_t) (rand_r (&seed) % (len / 512)) * 512;
          if (memcmp (t + blk + 257, "ustar", 5) != 0)
            continue;
          unsigned what = (unsigned) rand_r (&seed) % 3;
          if (what == 0)
            t[blk + rand_r (&seed) % 24] = alphabet[rand_r (&seed) % (sizeof (alphabet) - 1)];
          else if (what == 1)
            t[blk + 157 + rand_r (&seed) % 24] = alphabet[rand_r (&seed) % (sizeof (alphabet) - 1)];
          else
            t[blk + 156] = types[rand_r (&seed) % (sizeof (types) - 1)];
        }
      for (size_t blk = 0; blk + 512 <= len; blk += 512)
        if (memcmp (t + blk + 257, "ustar", 5) == 0)
          {
            memset (t + blk + 148, ' ', 8);
            unsigned sum = 0;
            for (int i = 0; i < 512; i++)
              sum += (unsigned char) t[blk + i];
            snprintf (t + blk + 148, 8, "%06o", sum);
          }
      ASSERT_OK (write_plain (unit_sandbox_fd, "fuzz.tar", t, len, 0644, err_));
      cleanup_close int l = new_case ("fuzz");
      const enum gr_whiteout_format fs[] = { GR_WHITEOUT_AUFS, GR_WHITEOUT_OVERLAY, GR_WHITEOUT_DELETE };
      gr_error_t err = NULL;
      if (apply_file (l, "fuzz.tar", fs[iter % 3], &err) == 0)
        accepted++;
      gr_error_release (&err);
      assert_outside_intact ("fuzz");
      struct stat st;
      CU_ASSERT_EQUAL (fstat (l, &st), 0);
    }
  /* the damage must not make every tar fail at its first header */
  fprintf (stderr, "(%d of 300 fuzzed tars applied) ", accepted);
  CU_ASSERT (accepted > 0);
}

/* Trees A and B hold the same entries (type, mode, owner, size, content,
   rdev, link target, mtime to the second, nlink, opacity); the roots'
   own metadata is not compared.  */
static void
assert_same_tree (int a, int b, const char *path)
{
  int fd = dup (a);
  cleanup_dir DIR *d = fdopendir (fd);
  CU_ASSERT_FATAL (d != NULL);
  int na = 0;
  for (struct dirent *de; (de = readdir (d));)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      na++;
      struct stat sa, sb;
      CU_ASSERT_EQUAL_FATAL (fstatat (a, de->d_name, &sa, AT_SYMLINK_NOFOLLOW), 0);
      if (fstatat (b, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0)
        {
          fprintf (stderr, "\nroundtrip: %s/%s missing\n", path, de->d_name);
          CU_FAIL ("entry missing after the roundtrip");
          continue;
        }
      bool same = sa.st_mode == sb.st_mode && sa.st_uid == sb.st_uid && sa.st_gid == sb.st_gid
                  && sa.st_nlink == sb.st_nlink && sa.st_mtim.tv_sec == sb.st_mtim.tv_sec
                  && (S_ISDIR (sa.st_mode) || sa.st_size == sb.st_size)
                  && ((! S_ISCHR (sa.st_mode) && ! S_ISBLK (sa.st_mode)) || sa.st_rdev == sb.st_rdev);
      if (! same)
        {
          fprintf (stderr, "\nroundtrip: %s/%s: mode %o/%o uid %u/%u nlink %lu/%lu mtime %ld/%ld\n", path,
                   de->d_name, sa.st_mode, sb.st_mode, sa.st_uid, sb.st_uid, (unsigned long) sa.st_nlink,
                   (unsigned long) sb.st_nlink, (long) sa.st_mtim.tv_sec, (long) sb.st_mtim.tv_sec);
          CU_FAIL ("entry differs after the roundtrip");
        }
      cleanup_free char *sub = xasprintf ("%s/%s", path, de->d_name);
      if (S_ISLNK (sa.st_mode))
        {
          char ta[PATH_MAX], tb[PATH_MAX];
          ssize_t la = readlinkat (a, de->d_name, ta, sizeof (ta));
          ssize_t lb = readlinkat (b, de->d_name, tb, sizeof (tb));
          CU_ASSERT (la == lb && la >= 0 && memcmp (ta, tb, (size_t) la) == 0);
        }
      else if (S_ISREG (sa.st_mode))
        {
          cleanup_free char *ca = read_at (a, de->d_name);
          cleanup_free char *cb = read_at (b, de->d_name);
          CU_ASSERT_STRING_EQUAL (ca, cb);
          char va[64], vb[64];
          cleanup_close int fa = openat (a, de->d_name, O_RDONLY | O_NOFOLLOW);
          cleanup_close int fb = openat (b, de->d_name, O_RDONLY | O_NOFOLLOW);
          ssize_t xa = fgetxattr (fa, "security.capability", va, sizeof (va));
          ssize_t xb = fgetxattr (fb, "security.capability", vb, sizeof (vb));
          CU_ASSERT (xa == xb && (xa < 0 || memcmp (va, vb, (size_t) xa) == 0));
        }
      else if (S_ISDIR (sa.st_mode) && S_ISDIR (sb.st_mode))
        {
          CU_ASSERT_EQUAL (gr_whiteout_is_overlay_opaque (a, de->d_name),
                           gr_whiteout_is_overlay_opaque (b, de->d_name));
          cleanup_close int ca = openat (a, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
          cleanup_close int cb = openat (b, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
          assert_same_tree (ca, cb, sub);
        }
    }
  /* and B has nothing more */
  fd = dup (b);
  cleanup_dir DIR *db = fdopendir (fd);
  int nb = 0;
  for (struct dirent *de; (de = readdir (db));)
    nb += strcmp (de->d_name, ".") != 0 && strcmp (de->d_name, "..") != 0;
  if (na != nb)
    fprintf (stderr, "\nroundtrip: %s: %d entries, then %d\n", path, na, nb);
  CU_ASSERT_EQUAL (na, nb);
}

/* apply, gr_archive_diff, apply again: the same layer.  */
static void
test_roundtrip_with_diff (void)
{
  make_whiteout_tar ();
  const enum gr_whiteout_format fs[] = { GR_WHITEOUT_OVERLAY, GR_WHITEOUT_AUFS };
  for (int i = 0; i < 2; i++)
    {
      cleanup_free char *c1 = xasprintf ("rt1-%d", i);
      cleanup_free char *c2 = xasprintf ("rt2-%d", i);
      cleanup_free char *tarname = xasprintf ("rt-%d.tar", i);
      cleanup_close int l1 = new_case (c1);
      ASSERT_OK (apply_file (l1, "types.tar", fs[i], err_));
      ASSERT_OK (apply_file (l1, "wh.tar", fs[i], err_));
      ASSERT_OK (apply_file (l1, "recreate.tar", fs[i], err_));
      {
        cleanup_close int out = openat (unit_sandbox_fd, tarname, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CU_ASSERT_FATAL (out >= 0);
        ASSERT_OK (gr_archive_diff (out, l1, fs[i], err_));
      }
      cleanup_close int l2 = new_case (c2);
      ASSERT_OK (apply_file (l2, tarname, fs[i], err_));
      assert_same_tree (l1, l2, c1);
      /* and its diff is the same tar, byte for byte */
      cleanup_free char *tar2 = xasprintf ("rt-%d-again.tar", i);
      {
        cleanup_close int out = openat (unit_sandbox_fd, tar2, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        CU_ASSERT_FATAL (out >= 0);
        ASSERT_OK (gr_archive_diff (out, l2, fs[i], err_));
      }
      cleanup_free char *t1 = NULL, *t2 = NULL;
      size_t n1 = 0, n2 = 0;
      ASSERT_OK (gr_read_file_at (&t1, &n1, unit_sandbox_fd, tarname, 0, err_));
      ASSERT_OK (gr_read_file_at (&t2, &n2, unit_sandbox_fd, tar2, 0, err_));
      CU_ASSERT (n1 == n2 && memcmp (t1, t2, n1) == 0);
    }
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("archive-apply", unit_sandbox_setup, unit_sandbox_teardown);
  CU_add_test (s, "entry types and attributes", test_types);
  CU_add_test (s, "raw and non-UTF-8 names", test_raw_names);
  CU_add_test (s, "SCHILY xattrs", test_schily_xattr);
  CU_add_test (s, "parallel applies", test_parallel);
  CU_add_test (s, "GNU extensions and header limits", test_gnu_and_limits);
  CU_add_test (s, "whiteouts: aufs", test_whiteouts_aufs);
  CU_add_test (s, "whiteouts: overlay", test_whiteouts_overlay);
  CU_add_test (s, "whiteouts: delete", test_whiteouts_delete);
  CU_add_test (s, "recreated after whiteout", test_recreated_after_whiteout);
  CU_add_test (s, "aufs pseudo-links", test_aufs_plnk);
  CU_add_test (s, "later entries replace earlier ones", test_replace);
  CU_add_test (s, "absolute symlinks resolve in the layer", test_absolute_symlink_in_root);
  CU_add_test (s, "hostile tars refused", test_hostile);
  CU_add_test (s, "hostile tars contained", test_contained);
  CU_add_test (s, "truncated and garbage tars", test_truncated_and_garbage);
  CU_add_test (s, "drain to EOF", test_drain);
  CU_add_test (s, "sparse files", test_sparse);
  CU_add_test (s, "roundtrip with gr_archive_diff", test_roundtrip_with_diff);
  CU_add_test (s, "fuzzed hostile tars", test_fuzz);
  return unit_run ();
}

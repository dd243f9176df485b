#include "config.h"

#include "driver.h"
#include "fsutil.h"
#include "mount.h"
#include "aufs-sandbox.h"
#include "tar-build.h"
#include "unit.h"

#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static char *
read_rel (struct gr_driver *d, const char *rel)
{
  char *data = NULL;
  gr_error_t err = NULL;
  if (gr_read_file_at (&data, NULL, d->home_fd, rel, 0, &err) < 0)
    {
      gr_error_release (&err);
      return NULL;
    }
  return data;
}

static void
test_layout (void)
{
  struct gr_driver *d = unit_open_aufs ("layout");
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (d->ops->create (d, "mid", "base", false, err_));
  ASSERT_OK (d->ops->create (d, "top", "mid", true, err_));
  cleanup_free char *b = read_rel (d, "layers/base");
  cleanup_free char *m = read_rel (d, "layers/mid");
  cleanup_free char *t = read_rel (d, "layers/top");
  CU_ASSERT_STRING_EQUAL (b, "");
  CU_ASSERT_STRING_EQUAL (m, "base\n");
  CU_ASSERT_STRING_EQUAL (t, "mid\nbase\n");
  cleanup_free char *fmt = read_rel (d, "whiteout-format");
  CU_ASSERT_STRING_EQUAL (fmt, "overlay");
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/top", &st, 0), 0);
  CU_ASSERT (S_ISDIR (st.st_mode));
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "mnt/top", &st, 0), 0);
  CU_ASSERT (d->ops->exists (d, "top"));
  CU_ASSERT (! d->ops->exists (d, "nope"));
  CU_ASSERT (! d->ops->exists (d, "../layers/top"));

  gr_error_t err = NULL;
  CU_ASSERT (d->ops->create (d, "top", "mid", false, &err) < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), EEXIST);
  gr_error_release (&err);
  CU_ASSERT (d->ops->create (d, "x", "missing", false, &err) < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), ENOENT);
  gr_error_release (&err);
  const char *hostile[] = { "../x", "a/b", "", "..", NULL };
  for (int i = 0; hostile[i]; i++)
    {
      CU_ASSERT (d->ops->create (d, hostile[i], NULL, false, &err) < 0);
      CU_ASSERT_EQUAL (gr_error_status (&err), EINVAL);
      gr_error_release (&err);
      CU_ASSERT (d->ops->create (d, "ok", hostile[i][0] ? hostile[i] : "/", false, &err) < 0);
      gr_error_release (&err);
    }
  CU_ASSERT (d->ops->get (d, NULL, "../../etc", &err) < 0);
  gr_error_release (&err);
  CU_ASSERT (d->ops->remove (d, "../diff", &err) < 0);
  gr_error_release (&err);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff", &st, 0), 0);
  gr_driver_free (d);
}

static void
write_at (struct gr_driver *d, const char *rel, const char *content)
{
  ASSERT_OK (gr_write_file_atomic (d->home_fd, rel, content, strlen (content), 0644, err_));
}

static void
test_get_put (void)
{
  struct gr_driver *d = unit_open_aufs ("getput");
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  write_at (d, "diff/base/hello", "base");
  ASSERT_OK (d->ops->create (d, "rw", "base", true, err_));

  cleanup_free char *bpath = NULL;
  ASSERT_OK (d->ops->get (d, &bpath, "base", err_));
  cleanup_free char *bdiff = xasprintf ("%s/diff/base", d->home);
  CU_ASSERT_STRING_EQUAL (bpath, bdiff);
  ASSERT_OK (d->ops->put (d, "base", err_));

  cleanup_free char *p1 = NULL, *p2 = NULL;
  ASSERT_OK (d->ops->get (d, &p1, "rw", err_));
  ASSERT_OK (d->ops->get (d, &p2, "rw", err_));
  CU_ASSERT_STRING_EQUAL (p1, p2);
  CU_ASSERT (gr_mount_is_mountpoint (p1));
  cleanup_free char *hello = xasprintf ("%s/hello", p1);
  struct stat st;
  CU_ASSERT_EQUAL (stat (hello, &st), 0);
  cleanup_free char *newf = xasprintf ("%s/new", p1);
  FILE *f = fopen (newf, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL (f);
  fputs ("x", f);
  fclose (f);
  CU_ASSERT_EQUAL (unlink (hello), 0);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/rw/new", &st, 0), 0);
  /* the deletion is an overlay whiteout in the rw layer; the base is intact */
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/rw/hello", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISCHR (st.st_mode) && st.st_rdev == makedev (0, 0));
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/base/hello", &st, 0), 0);

  int64_t size = -1;
  ASSERT_OK (d->ops->diff_size (d, &size, "rw", "base", err_));
  CU_ASSERT_EQUAL (size, 1);

  ASSERT_OK (d->ops->put (d, "rw", err_));
  CU_ASSERT (gr_mount_is_mountpoint (p1));
  ASSERT_OK (d->ops->put (d, "rw", err_));
  CU_ASSERT (! gr_mount_is_mountpoint (p1));
  /* an extra Put is harmless */
  ASSERT_OK (d->ops->put (d, "rw", err_));

  /* Remove of a mounted layer unmounts it */
  free (p2);
  ASSERT_OK (d->ops->get (d, &p2, "rw", err_));
  ASSERT_OK (d->ops->remove (d, "rw", err_));
  CU_ASSERT (! gr_mount_is_mountpoint (p1));
  CU_ASSERT (! d->ops->exists (d, "rw"));
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/rw", &st, 0), -1);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "mnt/rw", &st, 0), -1);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/rw-removing", &st, 0), -1);
  gr_driver_free (d);
}

static bool
mounted_ro (const char *path)
{
  struct statvfs sv;
  return statvfs (path, &sv) == 0 && (sv.f_flag & ST_RDONLY);
}

/* A layer filled by ApplyDiff (an image layer) mounts read-only, the
   others (containers', init layers, unmarked old ones) rw.  */
static void
test_image_layers_ro (void)
{
  struct gr_driver *d = unit_open_aufs ("ro");
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  write_at (d, "diff/base/hello", "base");
  ASSERT_OK (d->ops->create (d, "img", "base", false, err_));
  struct archive *a = tar_begin ("img.tar");
  add_file (a, "added", 0644, "img");
  put (a, ent (".wh.hello", AE_IFREG, 0644), NULL);
  tar_end (a);
  cleanup_close int tfd = openat (unit_sandbox_fd, "img.tar", O_RDONLY | O_CLOEXEC);
  int64_t size = -1;
  ASSERT_OK (d->ops->apply_diff (d, &size, "img", "base", tfd, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "work/img.ro", &st, 0), 0);

  cleanup_free char *p = NULL;
  ASSERT_OK (d->ops->get (d, &p, "img", err_));
  CU_ASSERT (gr_mount_is_mountpoint (p));
  CU_ASSERT (mounted_ro (p));
  cleanup_free char *added = xasprintf ("%s/added", p);
  cleanup_free char *hello = xasprintf ("%s/hello", p);
  CU_ASSERT_EQUAL (stat (added, &st), 0);
  CU_ASSERT (stat (hello, &st) < 0 && errno == ENOENT); /* the layer's own whiteout */
  CU_ASSERT (open (added, O_WRONLY | O_APPEND) < 0 && errno == EROFS);
  ASSERT_OK (d->ops->put (d, "img", err_));
  CU_ASSERT (!gr_mount_is_mountpoint (p));
  CU_ASSERT (fstatat (d->home_fd, "work/img", &st, 0) < 0); /* no work dir needed */

  /* a container layer on it: rw, the image below as it was */
  ASSERT_OK (d->ops->create (d, "ctr", "img", true, err_));
  cleanup_free char *c = NULL;
  ASSERT_OK (d->ops->get (d, &c, "ctr", err_));
  CU_ASSERT (!mounted_ro (c));
  cleanup_free char *added2 = xasprintf ("%s/added", c);
  FILE *f = fopen (added2, "a");
  CU_ASSERT_PTR_NOT_NULL_FATAL (f);
  fputs ("ctr", f);
  fclose (f);
  cleanup_free char *img_added = read_rel (d, "diff/img/added");
  CU_ASSERT_STRING_EQUAL (img_added, "img");
  ASSERT_OK (d->ops->put (d, "ctr", err_));

  /* no mark (a layer of an older root): rw, as before */
  ASSERT_OK (d->ops->create (d, "old", "base", false, err_));
  cleanup_free char *o = NULL;
  ASSERT_OK (d->ops->get (d, &o, "old", err_));
  CU_ASSERT (!mounted_ro (o));
  ASSERT_OK (d->ops->put (d, "old", err_));

  /* Remove drops the mark; a new layer of the same ID is not marked */
  ASSERT_OK (d->ops->remove (d, "ctr", err_));
  ASSERT_OK (d->ops->remove (d, "img", err_));
  CU_ASSERT (fstatat (d->home_fd, "work/img.ro", &st, 0) < 0);
  write_at (d, "work/img.ro", ""); /* as a crash between the two would leave it */
  ASSERT_OK (d->ops->create (d, "img", "base", true, err_));
  CU_ASSERT (fstatat (d->home_fd, "work/img.ro", &st, 0) < 0);
  cleanup_free char *n = NULL;
  ASSERT_OK (d->ops->get (d, &n, "img", err_));
  CU_ASSERT (!mounted_ro (n));
  ASSERT_OK (d->ops->put (d, "img", err_));
  gr_driver_free (d);
}

static void
test_deep_chain (void)
{
  struct gr_driver *d = unit_open_aufs ("deep");
  char id[80], parent[80] = "";
  /* 125 image layers + init + rw */
  for (int i = 0; i < 127; i++)
    {
      snprintf (id, sizeof (id), "%064d", i + 1);
      ASSERT_OK (d->ops->create (d, id, parent[0] ? parent : NULL, i >= 125, err_));
      cleanup_free char *rel = xasprintf ("diff/%s/f%d", id, i);
      write_at (d, rel, "x");
      strcpy (parent, id);
    }
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->get (d, &path, id, err_));
  for (int i = 0; i < 127; i += 21)
    {
      cleanup_free char *f = xasprintf ("%s/f%d", path, i);
      struct stat st;
      CU_ASSERT_EQUAL (stat (f, &st), 0);
    }
  /* one more is past what dockerd allows */
  gr_error_t err = NULL;
  CU_ASSERT (d->ops->create (d, "toodeep", id, true, &err) < 0);
  gr_error_release (&err);
  ASSERT_OK (d->ops->cleanup (d, err_));
  CU_ASSERT (! gr_mount_is_mountpoint (path));
  gr_driver_free (d);
}

static void
test_crash_recovery (void)
{
  struct gr_driver *d = unit_open_aufs ("crash");
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (d->ops->create (d, "rw", "base", true, err_));
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->get (d, &path, "rw", err_));
  ASSERT_OK (gr_mkdir_p_at (d->home_fd, "diff/dead-removing/sub", 0755, err_));
  ASSERT_OK (gr_mkdir_p_at (d->home_fd, "mnt/dead-removing", 0755, err_));
  /* "crash": drop the driver without unmounting */
  gr_driver_free (d);
  CU_ASSERT (gr_mount_is_mountpoint (path));
  d = unit_open_aufs ("crash");
  CU_ASSERT (! gr_mount_is_mountpoint (path));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/dead-removing", &st, 0), -1);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "mnt/dead-removing", &st, 0), -1);
  CU_ASSERT (d->ops->exists (d, "rw"));
  free (path);
  ASSERT_OK (d->ops->get (d, &path, "rw", err_));
  ASSERT_OK (d->ops->put (d, "rw", err_));
  gr_driver_free (d);
}

static void
test_convert_aufs_root (void)
{
  /* A root left by Docker's own aufs driver: .wh. files, no format record.  */
  cleanup_free char *home = xasprintf ("%s/legacy", unit_sandbox);
  int sfd = unit_sandbox_fd;
  ASSERT_OK (gr_mkdir_p_at (sfd, "legacy/layers", 0700, err_));
  ASSERT_OK (gr_mkdir_p_at (sfd, "legacy/diff/base/etc/keep", 0755, err_));
  ASSERT_OK (gr_mkdir_p_at (sfd, "legacy/diff/top/etc/keep", 0755, err_));
  ASSERT_OK (gr_mkdir_p_at (sfd, "legacy/diff/top/.wh..wh.plnk", 0700, err_));
  ASSERT_OK (gr_mkdir_p_at (sfd, "legacy/mnt/base", 0755, err_));
  ASSERT_OK (gr_mkdir_p_at (sfd, "legacy/mnt/top", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/layers/base", "", 0, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/layers/top", "base\n", 5, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/diff/base/etc/gone", "g", 1, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/diff/base/etc/keep/old", "o", 1, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/diff/top/etc/.wh.gone", "", 0, 0444, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/diff/top/etc/keep/.wh..wh..opq", "", 0, 0444, err_));
  ASSERT_OK (gr_write_file_atomic (sfd, "legacy/diff/top/etc/keep/new", "n", 1, 0644, err_));

  struct gr_driver *d = unit_open_aufs ("legacy");
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/top/etc/gone", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISCHR (st.st_mode) && st.st_rdev == makedev (0, 0));
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/top/etc/.wh.gone", &st, AT_SYMLINK_NOFOLLOW), -1);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/top/etc/keep/.wh..wh..opq", &st, AT_SYMLINK_NOFOLLOW), -1);
  CU_ASSERT_EQUAL (fstatat (d->home_fd, "diff/top/.wh..wh.plnk", &st, AT_SYMLINK_NOFOLLOW), -1);
  char v[4] = "";
  cleanup_free char *keep = xasprintf ("%s/diff/top/etc/keep", home);
  CU_ASSERT_EQUAL (lgetxattr (keep, "trusted.overlay.opaque", v, sizeof (v)), 1);
  CU_ASSERT_EQUAL (v[0], 'y');
  cleanup_free char *fmt = read_rel (d, "whiteout-format");
  CU_ASSERT_STRING_EQUAL (fmt, "overlay");

  /* and the union shows what aufs showed */
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->get (d, &path, "top", err_));
  cleanup_free char *gone = xasprintf ("%s/etc/gone", path);
  cleanup_free char *old = xasprintf ("%s/etc/keep/old", path);
  cleanup_free char *newf = xasprintf ("%s/etc/keep/new", path);
  CU_ASSERT_EQUAL (stat (gone, &st), -1);
  CU_ASSERT_EQUAL (stat (old, &st), -1);
  CU_ASSERT_EQUAL (stat (newf, &st), 0);
  ASSERT_OK (d->ops->put (d, "top", err_));
  gr_driver_free (d);
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  if (! gr_mount_fs_supported ("overlay"))
    {
      fprintf (stderr, "skipped: no overlayfs\n");
      return 77;
    }
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("aufs backend", unit_sandbox_setup, unit_aufs_teardown);
  CU_add_test (s, "layout and id checks", test_layout);
  CU_add_test (s, "get/put refcounts and mounts", test_get_put);
  CU_add_test (s, "image layers mount read-only", test_image_layers_ro);
  CU_add_test (s, "127-deep chain mounts", test_deep_chain);
  CU_add_test (s, "recovery after a crash", test_crash_recovery);
  CU_add_test (s, "convert a Docker aufs root", test_convert_aufs_root);
  return unit_run ();
}

#include "config.h"

#include "fsutil.h"
#include "unit.h"
#include "whiteout.h"

#include <sys/sysmacros.h>
#include <sys/xattr.h>


/* A fresh directory NAME in the unit_sandbox, opened.  */
static int
fresh_dir (const char *name)
{
  gr_error_t err = NULL;
  if (gr_rm_rf_at (unit_sandbox_fd, name, &err) < 0 || gr_mkdir_p_at (unit_sandbox_fd, name, 0755, &err) < 0)
    {
      fprintf (stderr, "%s\n", gr_error_msg (&err));
      abort ();
    }
  return openat (unit_sandbox_fd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
}

static void
test_format_names (void)
{
  enum gr_whiteout_format f;
  const enum gr_whiteout_format all[] = { GR_WHITEOUT_AUFS, GR_WHITEOUT_OVERLAY, GR_WHITEOUT_DELETE };
  for (size_t i = 0; i < 3; i++)
    {
      ASSERT_OK (gr_whiteout_format_parse (gr_whiteout_format_name (all[i]), &f, err_));
      CU_ASSERT_EQUAL (f, all[i]);
    }
  CU_ASSERT_STRING_EQUAL (gr_whiteout_format_name (GR_WHITEOUT_AUFS), "aufs");
  ASSERT_OK (gr_whiteout_format_parse ("overlay2", &f, err_));
  CU_ASSERT_EQUAL (f, GR_WHITEOUT_OVERLAY);
  ASSERT_OK (gr_whiteout_format_parse ("vfs", &f, err_));
  CU_ASSERT_EQUAL (f, GR_WHITEOUT_DELETE);
  gr_error_t err = NULL;
  CU_ASSERT (gr_whiteout_format_parse ("btrfs", &f, &err) < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), EINVAL);
  gr_error_release (&err);
}

static void
test_classify (void)
{
  enum gr_whiteout_kind k;
  const char *t = "unset";
  ASSERT_OK (gr_whiteout_classify_name ("foo", &k, &t, err_));
  CU_ASSERT_EQUAL (k, GR_WH_NONE);
  CU_ASSERT_PTR_NULL (t);
  ASSERT_OK (gr_whiteout_classify_name (".whfoo", &k, &t, err_));
  CU_ASSERT_EQUAL (k, GR_WH_NONE);
  ASSERT_OK (gr_whiteout_classify_name (".wh.foo", &k, &t, err_));
  CU_ASSERT_EQUAL (k, GR_WH_FILE);
  CU_ASSERT_STRING_EQUAL (t, "foo");
  ASSERT_OK (gr_whiteout_classify_name (".wh..hidden", &k, &t, err_));
  CU_ASSERT_EQUAL (k, GR_WH_FILE);
  CU_ASSERT_STRING_EQUAL (t, ".hidden");
  ASSERT_OK (gr_whiteout_classify_name (".wh..wh..opq", &k, &t, err_));
  CU_ASSERT_EQUAL (k, GR_WH_OPAQUE_DIR);
  const char *internals[] = { ".wh..wh.aufs", ".wh..wh.orph", ".wh..wh.plnk", ".wh..wh.other" };
  for (size_t i = 0; i < 4; i++)
    {
      ASSERT_OK (gr_whiteout_classify_name (internals[i], &k, NULL, err_));
      CU_ASSERT_EQUAL (k, GR_WH_INTERNAL);
    }
  const char *bad[] = { ".wh.", ".wh..", ".wh...", ".wh.a/b", ".wh./" };
  for (size_t i = 0; i < 5; i++)
    {
      gr_error_t err = NULL;
      CU_ASSERT (gr_whiteout_classify_name (bad[i], &k, &t, &err) < 0);
      CU_ASSERT_EQUAL (gr_error_status (&err), EINVAL);
      gr_error_release (&err);
    }
}

static void
test_overlay_file (void)
{
  cleanup_close int d = fresh_dir ("ovl");
  ASSERT_OK (gr_whiteout_create (d, "gone", GR_WHITEOUT_OVERLAY, err_));
  struct stat st;
  CU_ASSERT_EQUAL_FATAL (fstatat (d, "gone", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISCHR (st.st_mode));
  CU_ASSERT_EQUAL (st.st_rdev, makedev (0, 0));
  CU_ASSERT (gr_whiteout_is_overlay_file (&st));
  /* creating it again is fine */
  ASSERT_OK (gr_whiteout_create (d, "gone", GR_WHITEOUT_OVERLAY, err_));
  /* but a real file is not silently turned into a whiteout */
  cleanup_close int f = openat (d, "real", O_WRONLY | O_CREAT, 0644);
  gr_error_t err = NULL;
  CU_ASSERT (gr_whiteout_create (d, "real", GR_WHITEOUT_OVERLAY, &err) < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), EEXIST);
  gr_error_release (&err);
  CU_ASSERT_EQUAL (fstatat (d, "real", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (! gr_whiteout_is_overlay_file (&st));
  /* a char device that is not 0/0 is not a whiteout */
  CU_ASSERT_EQUAL (mknodat (d, "null", S_IFCHR | 0666, makedev (1, 3)), 0);
  CU_ASSERT_EQUAL (fstatat (d, "null", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (! gr_whiteout_is_overlay_file (&st));
  /* bad names */
  CU_ASSERT (gr_whiteout_create (d, "..", GR_WHITEOUT_OVERLAY, &err) < 0);
  gr_error_release (&err);
  CU_ASSERT (gr_whiteout_create (d, "a/b", GR_WHITEOUT_AUFS, &err) < 0);
  gr_error_release (&err);
  CU_ASSERT (gr_whiteout_create (d, "", GR_WHITEOUT_DELETE, &err) < 0);
  gr_error_release (&err);
}

static void
test_aufs_file (void)
{
  cleanup_close int d = fresh_dir ("aufs");
  ASSERT_OK (gr_whiteout_create (d, "gone", GR_WHITEOUT_AUFS, err_));
  struct stat st;
  CU_ASSERT_EQUAL_FATAL (fstatat (d, ".wh.gone", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISREG (st.st_mode));
  CU_ASSERT_EQUAL (st.st_size, 0);
  CU_ASSERT_EQUAL (fstatat (d, "gone", &st, AT_SYMLINK_NOFOLLOW), -1);
  ASSERT_OK (gr_whiteout_create (d, "gone", GR_WHITEOUT_AUFS, err_));
  ASSERT_OK (gr_whiteout_make_opaque (d, GR_WHITEOUT_AUFS, err_));
  CU_ASSERT_EQUAL (fstatat (d, ".wh..wh..opq", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT (S_ISREG (st.st_mode));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (d, ""));
}

static void
test_delete (void)
{
  cleanup_close int d = fresh_dir ("del");
  ASSERT_OK (gr_mkdir_p_at (d, "victimdir/sub", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (d, "victimdir/keep", "x", 1, 0644, err_));
  ASSERT_OK (gr_mkdir_p_at (d, "tree/a/b", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (d, "tree/a/b/f", "x", 1, 0644, err_));
  /* a symlink to a directory outside: removing it must not follow it */
  CU_ASSERT_EQUAL (symlinkat ("../victimdir", d, "tree/link"), 0);
  ASSERT_OK (gr_whiteout_create (d, "link", GR_WHITEOUT_DELETE, err_)); /* missing: fine */
  cleanup_close int tree = openat (d, "tree", O_RDONLY | O_DIRECTORY);
  ASSERT_OK (gr_whiteout_create (tree, "link", GR_WHITEOUT_DELETE, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (d, "victimdir/keep", &st, 0), 0);
  CU_ASSERT_EQUAL (fstatat (tree, "link", &st, AT_SYMLINK_NOFOLLOW), -1);
  ASSERT_OK (gr_whiteout_create (tree, "a", GR_WHITEOUT_DELETE, err_));
  CU_ASSERT_EQUAL (fstatat (tree, "a", &st, AT_SYMLINK_NOFOLLOW), -1);
  /* opaque: everything inside goes, the directory stays */
  ASSERT_OK (gr_write_file_atomic (d, "tree/x", "x", 1, 0644, err_));
  ASSERT_OK (gr_whiteout_make_opaque (tree, GR_WHITEOUT_DELETE, err_));
  CU_ASSERT_EQUAL (fstatat (d, "tree", &st, AT_SYMLINK_NOFOLLOW), 0);
  CU_ASSERT_EQUAL (fstatat (tree, "x", &st, AT_SYMLINK_NOFOLLOW), -1);
  CU_ASSERT_EQUAL (fstatat (d, "victimdir/sub", &st, 0), 0);
}

static void
test_overlay_opaque (void)
{
  cleanup_close int d = fresh_dir ("opq");
  ASSERT_OK (gr_mkdir_p_at (d, "o", 0755, err_));
  ASSERT_OK (gr_mkdir_p_at (d, "plain", 0755, err_));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (d, "o"));
  cleanup_close int o = openat (d, "o", O_RDONLY | O_DIRECTORY);
  ASSERT_OK (gr_whiteout_make_opaque (o, GR_WHITEOUT_OVERLAY, err_));
  char v[8] = { 0 };
  CU_ASSERT_EQUAL (fgetxattr (o, "trusted.overlay.opaque", v, sizeof (v)), 1);
  CU_ASSERT_EQUAL (v[0], 'y');
  CU_ASSERT (gr_whiteout_is_overlay_opaque (d, "o"));
  CU_ASSERT (gr_whiteout_is_overlay_opaque (o, ""));
  CU_ASSERT (gr_whiteout_is_overlay_opaque (o, NULL));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (d, "plain"));
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (d, "missing"));
  /* an O_PATH fd works too */
  cleanup_close int p = openat (d, "plain", O_PATH | O_DIRECTORY);
  ASSERT_OK (gr_whiteout_make_opaque (p, GR_WHITEOUT_OVERLAY, err_));
  CU_ASSERT (gr_whiteout_is_overlay_opaque (p, ""));
  CU_ASSERT (gr_whiteout_is_overlay_opaque (d, "plain"));
  /* only "y" is opaque ("x" marks a dir holding xwhiteouts in overlayfs 6.7+) */
  ASSERT_OK (gr_mkdir_p_at (d, "xdir", 0755, err_));
  cleanup_close int x = openat (d, "xdir", O_RDONLY | O_DIRECTORY);
  CU_ASSERT_EQUAL (fsetxattr (x, "trusted.overlay.opaque", "x", 1, 0), 0);
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (d, "xdir"));
  /* a symlink to an opaque dir is not opaque itself */
  CU_ASSERT_EQUAL (symlinkat ("o", d, "lnk"), 0);
  CU_ASSERT (! gr_whiteout_is_overlay_opaque (d, "lnk"));
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("whiteout", unit_sandbox_setup, unit_sandbox_teardown);
  CU_add_test (s, "format names", test_format_names);
  CU_add_test (s, "classify names", test_classify);
  CU_add_test (s, "overlay whiteout file", test_overlay_file);
  CU_add_test (s, "aufs whiteout file and opaque", test_aufs_file);
  CU_add_test (s, "delete format", test_delete);
  CU_add_test (s, "overlay opaque", test_overlay_opaque);
  return unit_run ();
}

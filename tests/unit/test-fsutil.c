#include "config.h"

#include "fsutil.h"
#include "unit.h"


static void
test_atomic_write (void)
{
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "f", "one", 3, 0600, err_));
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "f", "two!", 4, 0600, err_));
  cleanup_free char *data = NULL;
  size_t len = 0;
  ASSERT_OK (gr_read_file_at (&data, &len, unit_sandbox_fd, "f", 0, err_));
  CU_ASSERT_EQUAL (len, 4);
  CU_ASSERT_STRING_EQUAL (data, "two!");
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (unit_sandbox_fd, "f", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode & 07777, 0600);
  /* no temp files left behind */
  cleanup_dir DIR *d = opendir (unit_sandbox);
  int n = 0;
  for (struct dirent *de; (de = readdir (d));)
    if (de->d_name[0] != '.' || strncmp (de->d_name, ".f.tmp", 6) == 0)
      n++;
  CU_ASSERT_EQUAL (n, 1);
  gr_error_t err = NULL;
  CU_ASSERT (gr_read_file_at (&data, &len, unit_sandbox_fd, "f", 2, &err) < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), EFBIG);
  gr_error_release (&err);
}

static void
test_mkdir_rm (void)
{
  ASSERT_OK (gr_mkdir_p_at (unit_sandbox_fd, "a/b/c", 0700, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (unit_sandbox_fd, "a/b/c", &st, 0), 0);
  CU_ASSERT_EQUAL (st.st_mode & 07777, 0700);
  ASSERT_OK (gr_mkdir_p_at (unit_sandbox_fd, "a/b/c", 0700, err_));
  CU_ASSERT_EQUAL (mkdirat (unit_sandbox_fd, "a/b/locked", 0), 0);
  CU_ASSERT_EQUAL (mkdirat (unit_sandbox_fd, "a/b/locked/x", 0755), geteuid () == 0 ? 0 : -1);
  CU_ASSERT_EQUAL (symlinkat ("/etc", unit_sandbox_fd, "a/b/link"), 0);
  ASSERT_OK (gr_rm_rf_at (unit_sandbox_fd, "a", err_));
  CU_ASSERT_EQUAL (fstatat (unit_sandbox_fd, "a", &st, AT_SYMLINK_NOFOLLOW), -1);
  /* the symlink target is untouched */
  CU_ASSERT_EQUAL (stat ("/etc/passwd", &st), 0);
  ASSERT_OK (gr_rm_rf_at (unit_sandbox_fd, "missing", err_));
}

static void
test_open_in_root (void)
{
  ASSERT_OK (gr_mkdir_p_at (unit_sandbox_fd, "root/usr/lib", 0755, err_));
  CU_ASSERT_EQUAL (symlinkat ("/usr/lib", unit_sandbox_fd, "root/lib"), 0);
  CU_ASSERT_EQUAL (symlinkat ("../../../../../../etc", unit_sandbox_fd, "root/up"), 0);
  cleanup_close int root = open (unit_sandbox, O_RDONLY | O_DIRECTORY);
  cleanup_close int rfd = openat (root, "root", O_RDONLY | O_DIRECTORY);
  cleanup_close int fd = -1;
  ASSERT_OK (fd = gr_open_in_root (rfd, "lib/x", O_WRONLY | O_CREAT | O_EXCL, 0644, err_));
  struct stat st;
  CU_ASSERT_EQUAL (fstatat (rfd, "usr/lib/x", &st, 0), 0);
  /* ../ stays in the root: up/passwd is root/passwd, which doesn't exist */
  gr_error_t err = NULL;
  CU_ASSERT (gr_open_in_root (rfd, "up/passwd", O_RDONLY, 0, &err) < 0);
  gr_error_release (&err);
}

static void
test_dir_size (void)
{
  ASSERT_OK (gr_mkdir_p_at (unit_sandbox_fd, "sz/d", 0755, err_));
  ASSERT_OK (gr_write_file_atomic (unit_sandbox_fd, "sz/d/a", "12345", 5, 0644, err_));
  CU_ASSERT_EQUAL (linkat (unit_sandbox_fd, "sz/d/a", unit_sandbox_fd, "sz/b", 0), 0);
  CU_ASSERT_EQUAL (symlinkat ("abc", unit_sandbox_fd, "sz/s"), 0);
  cleanup_close int fd = openat (unit_sandbox_fd, "sz", O_RDONLY | O_DIRECTORY);
  int64_t size = -1;
  ASSERT_OK (gr_dir_size_at (fd, &size, err_));
  CU_ASSERT_EQUAL (size, 5 + 3);
}

int
main (void)
{
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("fsutil", unit_sandbox_setup, unit_sandbox_teardown);
  CU_add_test (s, "atomic write", test_atomic_write);
  CU_add_test (s, "mkdir -p and rm -rf", test_mkdir_rm);
  CU_add_test (s, "open in root", test_open_in_root);
  CU_add_test (s, "directory size", test_dir_size);
  return unit_run ();
}

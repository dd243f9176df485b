/* Hostile inputs and a corrupt graph root against the aufs backend (the
   adversarial review's regression tests): symlinks in place of layer
   dirs, parents removed under their children, ApplyDiff into a layer that
   is mounted, already applied or being applied.  Rule checked each time:
   a clear error, nothing outside the layer written or exposed, nothing
   already stored lost.  */
#include "config.h"

#include "driver.h"
#include "archive.h"
#include "fsutil.h"
#include "mount.h"
#include "tarsplit.h"
#include "aufs-sandbox.h"
#include "unit.h"

#include <pthread.h>
#include <sched.h>
#include <sys/wait.h>
#include <sys/socket.h>

/* An "outside" dir next to the driver's Home with one file.  */
static char *
make_outside (const char *name)
{
  char *dir = xasprintf ("%s/%s", unit_sandbox, name);
  cleanup_free char *f = xasprintf ("%s/secret", dir);
  CU_ASSERT_FATAL (mkdir (dir, 0755) == 0);
  FILE *fp = fopen (f, "we");
  CU_ASSERT_FATAL (fp != NULL);
  fputs ("secret\n", fp);
  fclose (fp);
  return dir;
}

/* A ustar header block at H: NAME, type TYPE, SIZE bytes of content.  */
static void
tar_header_link (char *h, const char *name, char type, size_t size, const char *link)
{
  memset (h, 0, 512);
  snprintf (h, 100, "%s", name);
  if (link)
    snprintf (h + 157, 100, "%s", link);
  snprintf (h + 100, 8, "%07o", 0644);
  snprintf (h + 108, 8, "%07o", 0);
  snprintf (h + 116, 8, "%07o", 0);
  snprintf (h + 124, 12, "%011o", (unsigned) size & 07777);
  snprintf (h + 136, 12, "%011o", 0);
  h[156] = type;
  memcpy (h + 257, "ustar\0" "00", 8);
  memset (h + 148, ' ', 8);
  unsigned sum = 0;
  for (int i = 0; i < 512; i++)
    sum += (unsigned char) h[i];
  snprintf (h + 148, 8, "%06o", sum);
}

static void
tar_header (char *h, const char *name, char type, size_t size)
{
  tar_header_link (h, name, type, size, NULL);
}

/* A one-file tar (ustar) NAME with CONTENT, as a socketpair read end.  */
static int
tar_fd (const char *name, const char *content)
{
  char tar[3 * 512] = { 0 };
  size_t len = strlen (content);
  tar_header (tar, name, '0', len);
  memcpy (tar + 512, content, len);
  int fds[2];
  CU_ASSERT_FATAL (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  /* 1.5 kB fits in the socket buffer; the end blocks are left out on
     purpose (libarchive takes EOF after an entry as the end).  */
  CU_ASSERT_FATAL (write (fds[1], tar, 512 + 512) == 1024);
  close (fds[1]);
  return fds[0];
}

static int
apply_one (struct gr_driver *d, const char *id, const char *parent, const char *name,
           const char *content, gr_error_t *err)
{
  int64_t size = 0;
  int fd = tar_fd (name, content);
  int r = d->ops->apply_diff (d, &size, id, parent, fd, err);
  close (fd);
  return r;
}

static bool
file_is (struct gr_driver *d, const char *rel, const char *content)
{
  cleanup_free char *data = NULL;
  gr_error_t err = NULL;
  if (gr_read_file_at (&data, NULL, d->home_fd, rel, 0, &err) < 0)
    {
      gr_error_release (&err);
      return false;
    }
  return strcmp (data, content) == 0;
}

/* Expect EXPR to fail with a message containing TEXT.  */
#define ASSERT_FAILS_WITH(expr, text)                                                              \
  do                                                                                               \
    {                                                                                              \
      gr_error_t _e = NULL;                                                                        \
      gr_error_t *err_ = &_e;                                                                      \
      int _r = (expr);                                                                             \
      CU_ASSERT (_r < 0);                                                                          \
      if (_r < 0 && strstr (gr_error_msg (&_e), text) == NULL)                                     \
        {                                                                                          \
          fprintf (stderr, "\n%s:%d: %s: `%s` lacks `%s`\n", __FILE__, __LINE__, #expr,            \
                   gr_error_msg (&_e), text);                                                      \
          CU_FAIL ("error message");                                                               \
        }                                                                                          \
      gr_error_release (&_e);                                                                      \
    }                                                                                              \
  while (0)

/* A diff/<id> that is a symlink to a dir outside Home: Get must not hand
   it out (dockerd would write through it), nor mount it as an upper or a
   lower layer; Remove drops the link, not what it points to.  */
static void
test_symlinked_diff (void)
{
  struct gr_driver *d = unit_open_aufs ("symdiff");
  cleanup_free char *outside = make_outside ("symdiff-outside");
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (d->ops->create (d, "kid", "base", false, err_));
  ASSERT_OK (d->ops->create (d, "lone", NULL, false, err_));
  cleanup_free char *diff_base = xasprintf ("%s/diff/base", d->home);
  cleanup_free char *diff_lone = xasprintf ("%s/diff/lone", d->home);
  rmdir (diff_base);
  rmdir (diff_lone);
  CU_ASSERT_FATAL (symlink (outside, diff_base) == 0);
  CU_ASSERT_FATAL (symlink (outside, diff_lone) == 0);

  ASSERT_FAILS_WITH (d->ops->get (d, &path, "lone", err_), "not a directory");
  CU_ASSERT (path == NULL);
  ASSERT_FAILS_WITH (d->ops->get (d, &path, "kid", err_), "not a directory");
  CU_ASSERT (path == NULL);
  cleanup_free char *mnt_kid = xasprintf ("%s/mnt/kid", d->home);
  CU_ASSERT (!gr_mount_is_mountpoint (mnt_kid));
  ASSERT_FAILS_WITH (apply_one (d, "lone", NULL, "x", "x", err_), "lone");
  CU_ASSERT (file_is (d, "layers/kid", "base\n"));
  ASSERT_OK (d->ops->remove (d, "lone", err_));
  cleanup_free char *secret = xasprintf ("%s/secret", outside);
  struct stat st;
  CU_ASSERT (stat (secret, &st) == 0);
  gr_driver_free (d);
}

/* mnt/<id> a symlink to a dir outside: mount(2) would follow it.  */
static void
test_symlinked_mnt (void)
{
  struct gr_driver *d = unit_open_aufs ("symmnt");
  cleanup_free char *outside = make_outside ("symmnt-outside");
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (d->ops->create (d, "kid", "base", false, err_));
  cleanup_free char *mnt_kid = xasprintf ("%s/mnt/kid", d->home);
  CU_ASSERT_FATAL (rmdir (mnt_kid) == 0);
  CU_ASSERT_FATAL (symlink (outside, mnt_kid) == 0);
  ASSERT_FAILS_WITH (d->ops->get (d, &path, "kid", err_), "not a directory");
  CU_ASSERT (!gr_mount_is_mountpoint (outside));
  if (gr_mount_is_mountpoint (outside))
    gr_unmount (outside, NULL);
  gr_driver_free (d);
}

/* layers/<id> naming a parent that is not there, or `../x`: clear errors.  */
static void
test_corrupt_chain (void)
{
  struct gr_driver *d = unit_open_aufs ("chain");
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (d->ops->create (d, "ghostkid", "base", false, err_));
  ASSERT_OK (d->ops->create (d, "dotkid", "base", false, err_));
  ASSERT_OK (gr_write_file_atomic (d->home_fd, "layers/ghostkid", "ghost\n", 6, 0644, err_));
  ASSERT_OK (gr_write_file_atomic (d->home_fd, "layers/dotkid", "../x\n", 5, 0644, err_));
  ASSERT_FAILS_WITH (d->ops->get (d, &path, "ghostkid", err_), "ghost");
  ASSERT_FAILS_WITH (d->ops->get (d, &path, "dotkid", err_), "corrupt parent chain");
  json_t *changes = NULL;
  ASSERT_FAILS_WITH (d->ops->changes (d, &changes, "ghostkid", NULL, err_), "ghost");
  gr_driver_free (d);
}

/* Removing a layer that others build on would break them: refused.  */
static void
test_remove_parent (void)
{
  struct gr_driver *d = unit_open_aufs ("parent");
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (apply_one (d, "base", NULL, "f", "base file", err_));
  ASSERT_OK (d->ops->create (d, "kid", "base", false, err_));
  ASSERT_FAILS_WITH (d->ops->remove (d, "base", err_), "kid");
  CU_ASSERT (d->ops->exists (d, "base"));
  CU_ASSERT (file_is (d, "diff/base/f", "base file"));
  ASSERT_OK (d->ops->get (d, &path, "kid", err_));
  ASSERT_OK (d->ops->put (d, "kid", err_));
  /* child first, then the parent: fine */
  ASSERT_OK (d->ops->remove (d, "kid", err_));
  ASSERT_OK (d->ops->remove (d, "base", err_));
  CU_ASSERT (!d->ops->exists (d, "base"));
  gr_driver_free (d);
}

/* Creates of children racing with the Remove of their parent: either the
   child exists with its parent, or its Create failed.  */
struct race
{
  struct gr_driver *d;
  int i;
};

static void *
race_create (void *arg)
{
  struct race *r = arg;
  gr_error_t err = NULL;
  char id[32];
  snprintf (id, sizeof id, "kid%d", r->i);
  (void) r->d->ops->create (r->d, id, "base", false, &err);
  gr_error_release (&err);
  return NULL;
}

static void *
race_remove (void *arg)
{
  struct race *r = arg;
  gr_error_t err = NULL;
  (void) r->d->ops->remove (r->d, "base", &err);
  gr_error_release (&err);
  return NULL;
}

static void
test_remove_parent_race (void)
{
  struct gr_driver *d = unit_open_aufs ("race");
  for (int round = 0; round < 20; round++)
    {
      pthread_t t[9];
      struct race r[9];
      ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
      for (int i = 0; i < 9; i++)
        {
          r[i].d = d;
          r[i].i = i;
          CU_ASSERT_FATAL (pthread_create (&t[i], NULL, i == 4 ? race_remove : race_create, &r[i]) == 0);
        }
      bool kids = false;
      for (int i = 0; i < 9; i++)
        pthread_join (t[i], NULL);
      for (int i = 0; i < 9; i++)
        {
          char id[32];
          snprintf (id, sizeof id, "kid%d", i);
          if (d->ops->exists (d, id))
            {
              kids = true;
              ASSERT_OK (d->ops->remove (d, id, err_));
            }
        }
      if (kids)
        CU_ASSERT (d->ops->exists (d, "base"));
      if (d->ops->exists (d, "base"))
        ASSERT_OK (d->ops->remove (d, "base", err_));
    }
  gr_driver_free (d);
}

/* ApplyDiff into a layer that already holds a diff, or is mounted:
   refused, and what was stored stays.  */
static void
test_apply_twice (void)
{
  struct gr_driver *d = unit_open_aufs ("twice");
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (apply_one (d, "base", NULL, "f", "first", err_));
  ASSERT_FAILS_WITH (apply_one (d, "base", NULL, "g", "second", err_), "base");
  CU_ASSERT (file_is (d, "diff/base/f", "first"));
  /* a second ApplyDiff that fails must not wipe the first either */
  {
    int64_t size;
    int fds[2];
    gr_error_t err = NULL;
    CU_ASSERT_FATAL (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    CU_ASSERT (write (fds[1], "garbage, not a tar at all", 25) == 25);
    close (fds[1]);
    CU_ASSERT (d->ops->apply_diff (d, &size, "base", NULL, fds[0], &err) < 0);
    gr_error_release (&err);
    close (fds[0]);
  }
  CU_ASSERT (file_is (d, "diff/base/f", "first"));

  ASSERT_OK (d->ops->create (d, "kid", "base", true, err_));
  ASSERT_OK (d->ops->get (d, &path, "kid", err_));
  ASSERT_FAILS_WITH (apply_one (d, "kid", "base", "k", "kid", err_), "mounted");
  ASSERT_OK (d->ops->put (d, "kid", err_));
  ASSERT_OK (apply_one (d, "kid", "base", "k", "kid", err_));
  CU_ASSERT (file_is (d, "diff/kid/k", "kid"));
  gr_driver_free (d);
}

/* While an ApplyDiff streams into a layer, a second ApplyDiff, a Diff, a
   Get or a Remove of it are refused (busy), not interleaved.  */
struct slow_apply
{
  struct gr_driver *d;
  int fd;
  int ret;
};

static void *
slow_apply_main (void *arg)
{
  struct slow_apply *s = arg;
  int64_t size = 0;
  gr_error_t err = NULL;
  s->ret = s->d->ops->apply_diff (s->d, &size, "busy", NULL, s->fd, &err);
  if (s->ret < 0)
    fprintf (stderr, "\nslow apply: %s\n", gr_error_msg (&err));
  gr_error_release (&err);
  return NULL;
}

static void
test_busy (void)
{
  struct gr_driver *d = unit_open_aufs ("busy");
  cleanup_free char *path = NULL;
  ASSERT_OK (d->ops->create (d, "busy", NULL, false, err_));
  int fds[2];
  CU_ASSERT_FATAL (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  struct slow_apply s = { d, fds[0], 0 };
  pthread_t t;
  CU_ASSERT_FATAL (pthread_create (&t, NULL, slow_apply_main, &s) == 0);
  /* the first half of a tar, then the apply waits for more */
  int one = tar_fd ("f", "content");
  char buf[1024];
  CU_ASSERT (read (one, buf, sizeof buf) == 1024);
  close (one);
  CU_ASSERT (write (fds[1], buf, 300) == 300);
  usleep (200 * 1000);
  ASSERT_FAILS_WITH (apply_one (d, "busy", NULL, "g", "other", err_), "busy");
  cleanup_close int null = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  ASSERT_FAILS_WITH (d->ops->diff (d, null, "busy", NULL, err_), "busy");
  ASSERT_FAILS_WITH (d->ops->remove (d, "busy", err_), "busy");
  ASSERT_FAILS_WITH (d->ops->get (d, &path, "busy", err_), "busy");
  CU_ASSERT (write (fds[1], buf + 300, 724) == 724);
  close (fds[1]);
  pthread_join (t, NULL);
  close (fds[0]);
  CU_ASSERT (s.ret == 0);
  CU_ASSERT (file_is (d, "diff/busy/f", "content"));
  ASSERT_OK (d->ops->remove (d, "busy", err_));
  gr_driver_free (d);
}

/* A whiteout-format file with garbage: Init refuses with the file named.  */
static void
test_garbage_format (void)
{
  struct gr_driver *d = unit_open_aufs ("garbage");
  ASSERT_OK (d->ops->create (d, "base", NULL, false, err_));
  ASSERT_OK (gr_write_file_atomic (d->home_fd, "whiteout-format", "\xff\x01zz", 4, 0600, err_));
  cleanup_free char *home = xstrdup (d->home);
  gr_driver_free (d);
  struct gr_driver *d2 = NULL;
  struct gr_driver_opts opts = { .mount_method = "overlay" };
  ASSERT_FAILS_WITH (gr_driver_open (&d2, "aufs", home, &opts, err_), "whiteout-format");
  CU_ASSERT (d2 == NULL);
}

/* layers/ (or diff/, mnt/, work/) a symlink out of Home: Init refuses the
   root; before, Remove {"ID":"passwd"} unlinked <target>/passwd.  */
static void
test_symlinked_kind (void)
{
  static const char *const kinds[] = { "layers", "diff", "mnt", "work" };
  cleanup_free char *outside = make_outside ("kind-outside");
  for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
    {
      cleanup_free char *home = xasprintf ("%s/kind-%s", unit_sandbox, kinds[i]);
      cleanup_free char *link = xasprintf ("%s/%s", home, kinds[i]);
      CU_ASSERT_FATAL (mkdir (home, 0755) == 0);
      CU_ASSERT_FATAL (symlink (outside, link) == 0);
      struct gr_driver *d = NULL;
      struct gr_driver_opts opts = { .mount_method = "overlay" };
      ASSERT_FAILS_WITH (gr_driver_open (&d, "aufs", home, &opts, err_), kinds[i]);
      if (d)
        {
          gr_error_t err = NULL;
          (void) d->ops->remove (d, "secret", &err);
          gr_error_release (&err);
          gr_driver_free (d);
        }
      cleanup_free char *secret = xasprintf ("%s/secret", outside);
      struct stat st;
      CU_ASSERT (stat (secret, &st) == 0);
    }
}

/* Found by tests/fuzz/fuzz-tarsplit: a GNU long-name header ('L') with
   no content made the disassembler call strnlen/strndup on a NULL buffer
   (driver/tarsplit.c meta_done -> field_str; UBSan: "null pointer passed
   as argument 1").  Under the sanitizer build that aborts; either way the
   tar must be accepted or refused with an error, not crash.  */
static void
test_tarsplit_empty_longname (void)
{
  char tar[5 * 512] = { 0 };
  tar_header (tar, "././@LongLink", 'L', 0);
  tar_header (tar + 512, "f", '0', 0);
  cleanup_close int out = open ("/dev/null", O_WRONLY | O_CLOEXEC);
  struct gr_tarsplit *ts = NULL;
  gr_error_t err = NULL;
  ASSERT_OK (gr_tarsplit_new (&ts, out, err_));
  if (gr_tarsplit_feed (ts, tar, sizeof tar, &err) == 0)
    (void) gr_tarsplit_finish (ts, &err);
  gr_error_release (&err);
  gr_tarsplit_free (ts);
}

/* The breakouts that aim at the host's own root (`/victim`, `../victim`
   from the layer at /layer, a symlink to `/../..` then a write through
   it), applied in a child chrooted into a jail dir, so that a write to
   the real `/` would land in the jail where it is seen.  At 13:29 today
   something wrote /victim ("owned", mtime 1600000000: a tar entry of
   test-archive-apply) on this machine; test-archive-apply checks only its
   sandbox, not `/`.  */
static void
test_apply_host_root (void)
{
  static const struct
  {
    const char *name;
    char type;
    const char *link;
  } cases[][3] = {
    { { "/victim", '0', NULL } },
    { { "../victim", '0', NULL } },
    { { "../../../../victim", '0', NULL } },
    { { "up", '2', "/../../../.." }, { "up/victim", '0', NULL } },
    { { "up", '2', "../../.." }, { "up/victim", '0', NULL } },
    { { "d", '5', NULL }, { "d/../../victim", '0', NULL } },
    { { "h", '1', "/victim" } },
    { { "h", '1', "../victim" } },
  };
  cleanup_free char *jail = xasprintf ("%s/jail", unit_sandbox);
  cleanup_free char *victim = xasprintf ("%s/victim", jail);
  CU_ASSERT_FATAL (mkdir (jail, 0755) == 0);
  for (size_t f = 0; f < 3; f++)
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++)
      {
        char tar[8 * 512] = { 0 };
        size_t off = 0;
        for (size_t e = 0; e < 3 && cases[c][e].name; e++)
          {
            bool reg = cases[c][e].type == '0';
            tar_header_link (tar + off, cases[c][e].name, cases[c][e].type, reg ? 5 : 0, cases[c][e].link);
            off += 512;
            if (reg)
              {
                memcpy (tar + off, "owned", 5);
                off += 512;
              }
          }
        pid_t pid = fork ();
        CU_ASSERT_FATAL (pid >= 0);
        if (pid == 0)
          {
            gr_error_t err = NULL;
            struct gr_apply_opts opts = { .whiteouts = (enum gr_whiteout_format) f };
            if (unshare (CLONE_NEWNS) < 0 || chroot (jail) < 0 || chdir ("/") < 0)
              _exit (2);
            if (mkdir ("/layer", 0755) < 0 && errno != EEXIST)
              _exit (2);
            int l = open ("/layer", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            int fds[2];
            if (l < 0 || socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0
                || write (fds[1], tar, sizeof tar) != (ssize_t) sizeof tar)
              _exit (2);
            close (fds[1]);
            (void) gr_archive_apply (l, fds[0], &opts, &err);
            gr_error_t e2 = NULL;
            (void) gr_empty_dir_at (l, &e2);
            _exit (0);
          }
        int status = 0;
        CU_ASSERT (waitpid (pid, &status, 0) == pid && WIFEXITED (status) && WEXITSTATUS (status) == 0);
        struct stat st;
        if (lstat (victim, &st) == 0)
          {
            fprintf (stderr, "\nBREAKOUT to the host root: case %zu, format %zu\n", c, f);
            CU_FAIL ("wrote /victim");
            unlink (victim);
          }
      }
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  if (!gr_mount_fs_supported ("overlay"))
    {
      fprintf (stderr, "skipped: no overlayfs\n");
      return 77;
    }
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("hostile", unit_sandbox_setup, unit_aufs_teardown);
  CU_add_test (s, "symlinked diff dirs", test_symlinked_diff);
  CU_add_test (s, "symlinked mnt dir", test_symlinked_mnt);
  CU_add_test (s, "corrupt parent chains", test_corrupt_chain);
  CU_add_test (s, "remove a parent with children", test_remove_parent);
  CU_add_test (s, "remove a parent racing creates", test_remove_parent_race);
  CU_add_test (s, "apply twice, apply into a mounted layer", test_apply_twice);
  CU_add_test (s, "busy layer during apply", test_busy);
  CU_add_test (s, "garbage whiteout-format", test_garbage_format);
  CU_add_test (s, "symlinked layers/diff/mnt/work", test_symlinked_kind);
  CU_add_test (s, "apply: breakouts aimed at the host root (chrooted)", test_apply_host_root);
  CU_add_test (s, "tar-split: empty GNU long name (fuzz)", test_tarsplit_empty_longname);
  return unit_run ();
}

#include "config.h"

#include "digest.h"
#include "distmeta.h"
#include "fsutil.h"
#include "graphroot.h"
#include "imagestore.h"
#include "layerstore.h"
#include "refstore.h"
#include "tarsplit.h"
#include "unit.h"

#include <signal.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

static char *sandbox;
static int sandbox_fd = -1;

static int
setup (void)
{
  sandbox = unit_mkdtemp ();
  sandbox_fd = open (sandbox, O_RDONLY | O_DIRECTORY);
  if (sandbox_fd < 0)
    return 1;
  cleanup_free char *cmd = xasprintf (
      "cd %s && python3 - <<'EOF'\n"
      "import tarfile, io\n"
      "def f(t, name, data=b'', mode=0o644, **kw):\n"
      "    ti = tarfile.TarInfo(name); ti.size = len(data); ti.mode = mode; ti.mtime = 1700000000\n"
      "    for k, v in kw.items(): setattr(ti, k, v)\n"
      "    t.addfile(ti, io.BytesIO(data) if data else None)\n"
      "def d(t, name, mode=0o755): f(t, name, type=tarfile.DIRTYPE, mode=mode)\n"
      "with tarfile.open('base.tar', 'w') as t:\n"
      "    d(t, 'etc'); d(t, 'bin'); d(t, 'usr'); d(t, 'usr/lib'); d(t, 'opq')\n"
      "    f(t, 'etc/hosts', b'127.0.0.1 localhost\\n')\n"
      "    f(t, 'etc/gone', b'bye')\n"
      "    f(t, 'bin/sh', b'#!shell' * 100, mode=0o755)\n"
      "    f(t, 'bin/sh2', type=tarfile.LNKTYPE, linkname='bin/sh')\n"
      "    f(t, 'lib', type=tarfile.SYMTYPE, linkname='usr/lib')\n"
      "    f(t, 'opq/old', b'old')\n"
      "with tarfile.open('child.tar', 'w') as t:\n"
      "    d(t, 'etc'); f(t, 'etc/.wh.gone'); f(t, 'etc/added', b'new file')\n"
      "    d(t, 'opq'); f(t, 'opq/.wh..wh..opq'); f(t, 'opq/new', b'n')\n"
      "    f(t, 'lib/libc.so', b'through the symlink')\n"
      "with tarfile.open('third.tar', 'w') as t:\n"
      "    f(t, 'x', b'x' * 5000)\n"
      "data = open('third.tar', 'rb').read()\n"
      "open('trailing.tar', 'wb').write(data + b'\\0' * 4096 + b'junk')\n"
      "EOF\n",
      sandbox);
  return system (cmd) != 0;
}

static int
teardown (void)
{
  close (sandbox_fd);
  unit_rm_rf (sandbox);
  free (sandbox);
  return 0;
}

static void
file_diff_id (char out[GR_DIGEST_LEN + 1], const char *name)
{
  cleanup_free char *data = NULL;
  size_t len = 0;
  ASSERT_OK (gr_read_file_at (&data, &len, sandbox_fd, name, 0, err_));
  char hex[GR_SHA256_HEX_LEN + 1];
  gr_sha256_hex (data, len, hex);
  snprintf (out, GR_DIGEST_LEN + 1, "sha256:%s", hex);
}

static int
reg (struct gr_graphroot *root, char **chain, const char *parent, const char *tar, const char *diff_override,
     gr_error_t *err)
{
  char diff[GR_DIGEST_LEN + 1];
  file_diff_id (diff, tar);
  cleanup_close int fd = openat (sandbox_fd, tar, O_RDONLY);
  return gr_layer_register_fd (root, chain, parent, diff_override ? diff_override : diff, fd, err);
}

static char *read_str (struct gr_graphroot *root, const char *fmt, ...) GR_PRINTF (2, 3);
static char *
read_str (struct gr_graphroot *root, const char *fmt, ...)
{
  va_list ap;
  char *path = NULL;
  va_start (ap, fmt);
  if (vasprintf (&path, fmt, ap) < 0)
    abort ();
  va_end (ap);
  char *data = NULL;
  gr_error_t e = NULL;
  if (gr_read_file_at (&data, NULL, root->root_fd, path, 0, &e) < 0)
    {
      gr_error_release (&e);
      data = NULL;
    }
  free (path);
  return data;
}

static bool
exists_at (int dirfd, const char *path)
{
  struct stat st;
  return fstatat (dirfd, path, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static int
count_entries (int dirfd, const char *path)
{
  cleanup_close int fd = openat (dirfd, path, O_RDONLY | O_DIRECTORY);
  if (fd < 0)
    return -1;
  cleanup_dir DIR *d = fdopendir (gr_steal_fd (fd));
  int n = 0;
  for (struct dirent *de; (de = readdir (d));)
    if (strcmp (de->d_name, ".") && strcmp (de->d_name, ".."))
      n++;
  return n;
}

static void
test_chain_id (void)
{
  char out[GR_DIGEST_LEN + 1];
  cleanup_free char *a = xasprintf ("sha256:%064d", 0);
  memset (a + 7, 'a', 64);
  cleanup_free char *b = xstrdup (a);
  memset (b + 7, 'b', 64);
  ASSERT_OK (gr_layer_chain_id (out, NULL, a, err_));
  CU_ASSERT_STRING_EQUAL (out, a);
  ASSERT_OK (gr_layer_chain_id (out, a, b, err_));
  /* sha256("sha256:aaa… sha256:bbb…"), computed with python's hashlib */
  CU_ASSERT_STRING_EQUAL (out, "sha256:ccd722928bd92476ba1745586fed6e45a102504185ad88cd89e01ff116fd146c");
  gr_error_t err = NULL;
  CU_ASSERT (gr_layer_chain_id (out, NULL, "sha256:xyz", &err) < 0);
  gr_error_release (&err);
}

/* The tar-split of CHAIN rebuilds TAR from DIR (the layer's files).  */
static void
check_tarsplit (struct gr_graphroot *root, const char *chain, const char *dir, const char *tar)
{
  cleanup_free char *ts_path
      = xasprintf ("image/%s/layerdb/sha256/%s/tar-split.json.gz", root->driver_name, chain + 7);
  cleanup_close int ts = openat (root->root_fd, ts_path, O_RDONLY);
  CU_ASSERT_FATAL (ts >= 0);
  cleanup_close int rootfd = openat (root->root_fd, dir, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_FATAL (rootfd >= 0);
  cleanup_free char *back = xasprintf ("%s.back", tar);
  cleanup_close int out = openat (sandbox_fd, back, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_OK (gr_tarsplit_assemble (out, ts, rootfd, err_));
  cleanup_free char *cmd = xasprintf ("cmp %s/%s %s/%s", sandbox, tar, sandbox, back);
  CU_ASSERT_EQUAL (system (cmd), 0);
}

static void
test_overlay2 (void)
{
  cleanup_free char *dir = xasprintf ("%s/ovl", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "overlay2", err_));
  cleanup_free char *base = NULL, *child = NULL, *third = NULL;
  ASSERT_OK (reg (root, &base, NULL, "base.tar", NULL, err_));
  ASSERT_OK (reg (root, &child, base, "child.tar", NULL, err_));
  ASSERT_OK (reg (root, &third, child, "trailing.tar", NULL, err_));

  char diff[GR_DIGEST_LEN + 1];
  file_diff_id (diff, "base.tar");
  CU_ASSERT_STRING_EQUAL (base, diff);
  cleanup_free char *d = read_str (root, "image/overlay2/layerdb/sha256/%s/diff", base + 7);
  CU_ASSERT_STRING_EQUAL (d, diff);
  cleanup_free char *c1 = read_str (root, "image/overlay2/layerdb/sha256/%s/cache-id", base + 7);
  cleanup_free char *c2 = read_str (root, "image/overlay2/layerdb/sha256/%s/cache-id", child + 7);
  cleanup_free char *c3 = read_str (root, "image/overlay2/layerdb/sha256/%s/cache-id", third + 7);
  CU_ASSERT_FATAL (c1 && c2 && c3);
  CU_ASSERT (gr_hex64_valid (c1) && gr_hex64_valid (c2));
  cleanup_free char *p2 = read_str (root, "image/overlay2/layerdb/sha256/%s/parent", child + 7);
  CU_ASSERT_STRING_EQUAL (p2, base);
  cleanup_free char *p1 = read_str (root, "image/overlay2/layerdb/sha256/%s/parent", base + 7);
  CU_ASSERT_PTR_NULL (p1);
  /* size: directory.Size of the diff dir (hard link counted once) */
  cleanup_free char *sz = read_str (root, "image/overlay2/layerdb/sha256/%s/size", base + 7);
  CU_ASSERT_STRING_EQUAL (sz, "733"); /* 20 + 3 + 700 + 7 ("usr/lib") + 3 */

  /* overlay2 layout */
  cleanup_free char *l1 = read_str (root, "overlay2/%s/link", c1);
  cleanup_free char *l2 = read_str (root, "overlay2/%s/link", c2);
  CU_ASSERT_FATAL (l1 && l2);
  CU_ASSERT_EQUAL (strlen (l1), 26);
  CU_ASSERT_EQUAL (strspn (l1, "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"), 26);
  cleanup_free char *lpath = xasprintf ("overlay2/l/%s", l1);
  char target[256] = "";
  CU_ASSERT (readlinkat (root->root_fd, lpath, target, sizeof (target) - 1) > 0);
  cleanup_free char *want = xasprintf ("../%s/diff", c1);
  CU_ASSERT_STRING_EQUAL (target, want);
  cleanup_free char *lower1 = read_str (root, "overlay2/%s/lower", c1);
  CU_ASSERT_PTR_NULL (lower1);
  cleanup_free char *lower2 = read_str (root, "overlay2/%s/lower", c2);
  cleanup_free char *want2 = xasprintf ("l/%s", l1);
  CU_ASSERT_STRING_EQUAL (lower2, want2);
  cleanup_free char *lower3 = read_str (root, "overlay2/%s/lower", c3);
  cleanup_free char *want3 = xasprintf ("l/%s:l/%s", l2, l1);
  CU_ASSERT_STRING_EQUAL (lower3, want3);
  cleanup_free char *committed = xasprintf ("overlay2/%s/committed", c1);
  cleanup_free char *work1 = xasprintf ("overlay2/%s/work", c1);
  cleanup_free char *work2 = xasprintf ("overlay2/%s/work", c2);
  CU_ASSERT (exists_at (root->root_fd, committed));
  CU_ASSERT (!exists_at (root->root_fd, work1));
  CU_ASSERT (exists_at (root->root_fd, work2));
  struct stat st;
  cleanup_free char *lowerp = xasprintf ("overlay2/%s/lower", c2);
  CU_ASSERT (fstatat (root->root_fd, lowerp, &st, 0) == 0 && (st.st_mode & 0777) == 0644);
  /* whiteouts in overlay form */
  cleanup_free char *wh = xasprintf ("overlay2/%s/diff/etc/gone", c2);
  CU_ASSERT (fstatat (root->root_fd, wh, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISCHR (st.st_mode)
             && st.st_rdev == makedev (0, 0));
  cleanup_free char *opq = xasprintf ("%s/overlay2/%s/diff/opq", dir, c2);
  char v[8] = "";
  CU_ASSERT (lgetxattr (opq, "trusted.overlay.opaque", v, sizeof (v)) == 1 && v[0] == 'y');
  /* tar-split rebuilds the exact tars from the diff dirs, trailing bytes too */
  cleanup_free char *dd1 = xasprintf ("overlay2/%s/diff", c1);
  cleanup_free char *dd3 = xasprintf ("overlay2/%s/diff", c3);
  check_tarsplit (root, base, dd1, "base.tar");
  check_tarsplit (root, third, dd3, "trailing.tar");
  /* lookups */
  CU_ASSERT (gr_layerstore_has (root, child));
  cleanup_free char *found = NULL;
  char cdiff[GR_DIGEST_LEN + 1];
  file_diff_id (cdiff, "child.tar");
  int r = -1;
  ASSERT_OK (r = gr_layerstore_find_by_diff_id (root, &found, cdiff, err_));
  CU_ASSERT_EQUAL (r, 1);
  CU_ASSERT_STRING_EQUAL (found, child);
  struct gr_layer_info info;
  ASSERT_OK (gr_layerstore_get (root, &info, child, err_));
  CU_ASSERT_STRING_EQUAL (info.cache_id, c2);
  CU_ASSERT_STRING_EQUAL (info.parent, base);

  /* the same layer again: the registered one is kept, the new dir dropped */
  int before = count_entries (root->root_fd, "overlay2");
  cleanup_free char *again = NULL;
  ASSERT_OK (reg (root, &again, NULL, "base.tar", NULL, err_));
  CU_ASSERT_STRING_EQUAL (again, base);
  cleanup_free char *c1b = read_str (root, "image/overlay2/layerdb/sha256/%s/cache-id", base + 7);
  CU_ASSERT_STRING_EQUAL (c1b, c1);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "overlay2"), before);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "overlay2/l"), before - 1);

  /* a wrong diffID: error, nothing registered, nothing left behind */
  gr_error_t err = NULL;
  cleanup_free char *bad = NULL;
  CU_ASSERT (reg (root, &bad, base, "third.tar", diff /* not its diffID */, &err) < 0);
  CU_ASSERT (err && strstr (err->msg, "diffID") != NULL);
  gr_error_release (&err);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "overlay2"), before);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "image/overlay2/layerdb/tmp"), 0);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "image/overlay2/layerdb/sha256"), 3);
  /* a missing parent */
  CU_ASSERT (reg (root, &bad, "sha256:0000000000000000000000000000000000000000000000000000000000000000",
                  "third.tar", NULL, &err)
             < 0);
  CU_ASSERT_EQUAL (gr_error_status (&err), ENOENT);
  gr_error_release (&err);
  gr_graphroot_free (root);
}

static void
test_pending_parent (void)
{
  cleanup_free char *dir = xasprintf ("%s/pending", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "overlay2", err_));
  char d1[GR_DIGEST_LEN + 1], d2[GR_DIGEST_LEN + 1];
  file_diff_id (d1, "base.tar");
  file_diff_id (d2, "child.tar");
  cleanup_free char *b1 = NULL, *b2 = NULL;
  size_t n1 = 0, n2 = 0;
  ASSERT_OK (gr_read_file_at (&b1, &n1, sandbox_fd, "base.tar", 0, err_));
  ASSERT_OK (gr_read_file_at (&b2, &n2, sandbox_fd, "child.tar", 0, err_));
  struct gr_layer_writer *w1 = NULL, *w2 = NULL;
  ASSERT_OK (gr_layer_writer_new (&w1, root, NULL, d1, err_));
  /* the child is started while its parent is still being written */
  ASSERT_OK (gr_layer_writer_new (&w2, root, gr_layer_writer_chain_id (w1), d2, err_));
  ASSERT_OK (gr_layer_writer_write (w2, b2, n2, err_));
  ASSERT_OK (gr_layer_writer_write (w1, b1, n1, err_));
  ASSERT_OK (gr_layer_writer_commit (w1, NULL, err_));
  ASSERT_OK (gr_layer_writer_commit (w2, NULL, err_));
  CU_ASSERT (gr_layerstore_has (root, gr_layer_writer_chain_id (w2)));
  gr_layer_writer_free (w1);
  gr_layer_writer_free (w2);

  /* a child whose pending parent is aborted is not registered */
  char d3[GR_DIGEST_LEN + 1];
  file_diff_id (d3, "third.tar");
  cleanup_free char *b3 = NULL;
  size_t n3 = 0;
  ASSERT_OK (gr_read_file_at (&b3, &n3, sandbox_fd, "third.tar", 0, err_));
  struct gr_layer_writer *p = NULL, *c = NULL;
  cleanup_free char *other = xstrdup (d3);
  other[7] = other[7] == 'a' ? 'b' : 'a';
  ASSERT_OK (gr_layer_writer_new (&p, root, NULL, other, err_));
  ASSERT_OK (gr_layer_writer_new (&c, root, gr_layer_writer_chain_id (p), d3, err_));
  ASSERT_OK (gr_layer_writer_write (c, b3, n3, err_));
  ASSERT_OK (gr_layer_writer_write (p, b3, n3, err_));
  gr_error_t err = NULL;
  CU_ASSERT (gr_layer_writer_commit (p, NULL, &err) < 0); /* wrong diffID */
  gr_error_release (&err);
  gr_layer_writer_free (p);
  CU_ASSERT (gr_layer_writer_commit (c, NULL, &err) < 0);
  gr_error_release (&err);
  gr_layer_writer_free (c);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "image/overlay2/layerdb/sha256"), 2);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "overlay2"), 3); /* 2 layers + l */
  gr_graphroot_free (root);
}

/* Three aborted writers of a chain (aufs refuses to remove a layer others
   stand on), freed parent first: the parent and the middle one wait as
   orphans, listed parent first, and all go once the last child is gone.  */
static void
test_aborted_chain (void)
{
  cleanup_free char *dir = xasprintf ("%s/aborted", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "aufs", err_));
  struct gr_layer_writer *w[3] = { NULL };
  const char *parent = NULL;
  for (int i = 0; i < 3; i++)
    {
      char diff[GR_DIGEST_LEN + 1];
      snprintf (diff, sizeof (diff), "sha256:%064d", i + 1);
      ASSERT_OK (gr_layer_writer_new (&w[i], root, parent, diff, err_));
      parent = gr_layer_writer_chain_id (w[i]);
    }
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "aufs/diff"), 3);
  for (int i = 0; i < 3; i++)
    gr_layer_writer_free (w[i]);
  CU_ASSERT_EQUAL (root->n_orphans, 0);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "aufs/diff"), 0);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "aufs/layers"), 0);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "image/aufs/layerdb/tmp"), 0);
  gr_graphroot_free (root);
}

static void
test_interrupted (void)
{
  cleanup_free char *dir = xasprintf ("%s/crash", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "overlay2", err_));
  gr_graphroot_free (root);
  pid_t pid = fork ();
  if (pid == 0)
    {
      /* a writer killed in the middle of a layer */
      struct gr_graphroot *r = NULL;
      struct gr_layer_writer *w = NULL;
      char d1[GR_DIGEST_LEN + 1];
      file_diff_id (d1, "base.tar");
      if (gr_graphroot_open (&r, dir, "overlay2", NULL) < 0 || gr_layer_writer_new (&w, r, NULL, d1, NULL) < 0
          || gr_layer_writer_write (w, "x", 0, NULL) < 0)
        _exit (1);
      _exit (0);
    }
  int status = 0;
  waitpid (pid, &status, 0);
  CU_ASSERT_FATAL (WIFEXITED (status) && WEXITSTATUS (status) == 0);
  cleanup_close int dfd = open (dir, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_EQUAL (count_entries (dfd, "image/overlay2/layerdb/tmp"), 1);
  CU_ASSERT_EQUAL (count_entries (dfd, "overlay2"), 2);
  /* the next open cleans up */
  ASSERT_OK (gr_graphroot_open (&root, dir, "overlay2", err_));
  CU_ASSERT_EQUAL (count_entries (dfd, "image/overlay2/layerdb/tmp"), 0);
  CU_ASSERT_EQUAL (count_entries (dfd, "overlay2"), 1);
  CU_ASSERT_EQUAL (count_entries (dfd, "overlay2/l"), 0);
  gr_graphroot_free (root);
}

/* A stream that is not a tar, longer than the pipes between the writer's
   stages: the caller gets the error (no hang on a full pipe), nothing is
   registered, nothing is left behind.  */
static void
test_not_a_tar (void)
{
  cleanup_free char *dir = xasprintf ("%s/garbage", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "overlay2", err_));
  const char *diff = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
  for (int at_commit = 0; at_commit < 2; at_commit++)
    {
      struct gr_layer_writer *w = NULL;
      ASSERT_OK (gr_layer_writer_new (&w, root, NULL, diff, err_));
      static char junk[65536];
      memset (junk, 'j', sizeof (junk));
      gr_error_t err = NULL;
      int r = 0;
      /* 64 MiB at most; the failure must reach the writer long before */
      for (int i = 0; i < (at_commit ? 1 : 1024) && r == 0; i++)
        r = gr_layer_writer_write (w, junk, sizeof (junk), &err);
      if (!at_commit)
        CU_ASSERT (r < 0); /* a write reported it: the stages did not block */
      if (r == 0)
        r = gr_layer_writer_commit (w, NULL, &err);
      CU_ASSERT (r < 0);
      /* the tar-split stage's error, which comes before the extraction's */
      CU_ASSERT (err && strstr (err->msg, "invalid tar header") != NULL);
      if (err && strstr (err->msg, "invalid tar header") == NULL)
        fprintf (stderr, "\n%s\n", err->msg);
      gr_error_release (&err);
      gr_layer_writer_free (w);
    }
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "image/overlay2/layerdb/tmp"), 0);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "image/overlay2/layerdb/sha256"), 0);
  CU_ASSERT_EQUAL (count_entries (root->root_fd, "overlay2"), 1); /* l/ */
  gr_graphroot_free (root);
}

static void
test_vfs (void)
{
  cleanup_free char *dir = xasprintf ("%s/vfs", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "vfs", err_));
  cleanup_free char *base = NULL, *child = NULL;
  ASSERT_OK (reg (root, &base, NULL, "base.tar", NULL, err_));
  ASSERT_OK (reg (root, &child, base, "child.tar", NULL, err_));
  cleanup_free char *c1 = read_str (root, "image/vfs/layerdb/sha256/%s/cache-id", base + 7);
  cleanup_free char *c2 = read_str (root, "image/vfs/layerdb/sha256/%s/cache-id", child + 7);
  CU_ASSERT_FATAL (c1 && c2);
  cleanup_free char *l2 = xasprintf ("vfs/dir/%s", c2);
  cleanup_close int l2fd = openat (root->root_fd, l2, O_RDONLY | O_DIRECTORY);
  CU_ASSERT_FATAL (l2fd >= 0);
  /* the parent's files are there, deletions carried out, no whiteouts */
  CU_ASSERT (exists_at (l2fd, "etc/hosts"));
  CU_ASSERT (exists_at (l2fd, "etc/added"));
  CU_ASSERT (!exists_at (l2fd, "etc/gone"));
  CU_ASSERT (!exists_at (l2fd, "etc/.wh.gone"));
  CU_ASSERT (exists_at (l2fd, "opq/new"));
  CU_ASSERT (!exists_at (l2fd, "opq/old"));
  CU_ASSERT (exists_at (l2fd, "usr/lib/libc.so"));
  struct stat a, b;
  CU_ASSERT (fstatat (l2fd, "bin/sh", &a, 0) == 0 && fstatat (l2fd, "bin/sh2", &b, 0) == 0
             && a.st_ino == b.st_ino);
  /* as moby's createTarFile: the hard link entry's mode wins */
  CU_ASSERT ((a.st_mode & 07777) == 0644);
  CU_ASSERT (a.st_mtime == 1700000000);
  char t[64] = "";
  CU_ASSERT (readlinkat (l2fd, "lib", t, sizeof (t)) == 7);
  /* the parent is untouched */
  cleanup_free char *l1 = xasprintf ("vfs/dir/%s/etc/gone", c1);
  CU_ASSERT (exists_at (root->root_fd, l1));
  /* size: the sum of the tar's size fields, as dockerd's vfs */
  cleanup_free char *sz = read_str (root, "image/vfs/layerdb/sha256/%s/size", base + 7);
  CU_ASSERT_STRING_EQUAL (sz, "726"); /* 20 + 3 + 700 + 3 */
  cleanup_free char *d1 = xasprintf ("vfs/dir/%s", c1);
  check_tarsplit (root, base, d1, "base.tar");
  gr_graphroot_free (root);
}

static void
test_names (void)
{
  static const char *const cases[][3] = {
    { "ubuntu", "docker.io/library/ubuntu", "ubuntu" },
    { "docker.io/library/ubuntu", "docker.io/library/ubuntu", "ubuntu" },
    { "index.docker.io/library/ubuntu", "docker.io/library/ubuntu", "ubuntu" },
    { "user/repo", "docker.io/user/repo", "user/repo" },
    { "docker.io/user/repo", "docker.io/user/repo", "user/repo" },
    { "docker.io/library/a/b", "docker.io/library/a/b", "library/a/b" },
    { "127.0.0.1:5000/x", "127.0.0.1:5000/x", "127.0.0.1:5000/x" },
    { "localhost/x", "localhost/x", "localhost/x" },
    { "quay.io/a/b-c_d.e", "quay.io/a/b-c_d.e", "quay.io/a/b-c_d.e" },
  };
  for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++)
    {
      cleanup_free char *full = NULL, *fam = NULL;
      ASSERT_OK (gr_ref_normalize (&full, cases[i][0], err_));
      ASSERT_OK (gr_ref_familiar (&fam, cases[i][0], err_));
      CU_ASSERT_STRING_EQUAL (full, cases[i][1]);
      CU_ASSERT_STRING_EQUAL (fam, cases[i][2]);
    }
  static const char *const bad[] = { "Ubuntu", "a//b", "-a", "a-", "a__-b/", "" };
  for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++)
    {
      cleanup_free char *full = NULL;
      gr_error_t err = NULL;
      CU_ASSERT (gr_ref_normalize (&full, bad[i], &err) < 0);
      gr_error_release (&err);
    }
}

static void
test_stores (void)
{
  cleanup_free char *dir = xasprintf ("%s/ovl", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open (&root, dir, "overlay2", err_));
  char d1[GR_DIGEST_LEN + 1], d2[GR_DIGEST_LEN + 1];
  file_diff_id (d1, "base.tar");
  file_diff_id (d2, "child.tar");
  /* image config */
  cleanup_free char *config
      = xasprintf ("{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{},"
                   "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]},"
                   "\"history\":[{\"created_by\":\"a\"},{\"created_by\":\"b\"},{\"empty_layer\":true}]}",
                   d1, d2);
  char id[GR_DIGEST_LEN + 1];
  ASSERT_OK (gr_imagestore_put (root, id, config, strlen (config), err_));
  char hex[GR_SHA256_HEX_LEN + 1];
  gr_sha256_hex (config, strlen (config), hex);
  CU_ASSERT (strcmp (id + 7, hex) == 0);
  CU_ASSERT (gr_imagestore_has (root, id));
  cleanup_free char *content = read_str (root, "image/overlay2/imagedb/content/sha256/%s", hex);
  CU_ASSERT_STRING_EQUAL (content, config);
  struct stat st;
  cleanup_free char *cpath = xasprintf ("image/overlay2/imagedb/content/sha256/%s", hex);
  CU_ASSERT (fstatat (root->root_fd, cpath, &st, 0) == 0 && (st.st_mode & 0777) == 0600);
  /* a config whose layers are not there is refused */
  cleanup_free char *orphan = xasprintf ("{\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\"]}}", d2);
  gr_error_t err = NULL;
  CU_ASSERT (gr_imagestore_put (root, id, orphan, strlen (orphan), &err) < 0);
  gr_error_release (&err);
  ASSERT_OK (gr_imagestore_set_last_updated (root, id, err_));
  cleanup_free char *lu = read_str (root, "image/overlay2/imagedb/metadata/sha256/%s/lastUpdated", hex);
  CU_ASSERT (lu && strlen (lu) >= 20 && lu[4] == '-' && lu[10] == 'T' && lu[strlen (lu) - 1] == 'Z');

  /* references: existing entries kept, familiar names, digest refs never repointed */
  const char *other = "{\"Repositories\":{\"keep\":{\"keep:1\":\"sha256:"
                      "1111111111111111111111111111111111111111111111111111111111111111\"}}}";
  ASSERT_OK (gr_write_file_atomic (root->image_fd, "repositories.json", other, strlen (other), 0600, err_));
  const char *mdig = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
  ASSERT_OK (gr_refstore_add (root, "docker.io/library/ubuntu", "22.04", mdig, id, err_));
  ASSERT_OK (gr_refstore_add (root, "127.0.0.1:5000/x/y", "latest", mdig, id, err_));
  const char *id2 = "sha256:3333333333333333333333333333333333333333333333333333333333333333";
  ASSERT_OK (gr_refstore_add (root, "ubuntu", "22.04", mdig, id2, err_));
  cleanup_free char *repos = read_str (root, "image/overlay2/repositories.json");
  cleanup_free char *want
      = xasprintf ("{\"Repositories\":{\"127.0.0.1:5000/x/y\":{\"127.0.0.1:5000/x/y:latest\":\"%s\","
                   "\"127.0.0.1:5000/x/"
                   "y@%s\":\"%s\"},\"keep\":{\"keep:1\":\"sha256:"
                   "1111111111111111111111111111111111111111111111111111111111111111\"},"
                   "\"ubuntu\":{\"ubuntu:22.04\":\"%s\",\"ubuntu@%s\":\"%s\"}}}",
                   id, mdig, id, id2, mdig, id);
  CU_ASSERT_STRING_EQUAL (repos, want);
  if (strcmp (repos, want) != 0)
    fprintf (stderr, "\n%s\n%s\n", repos, want);
  cleanup_free char *found = NULL;
  int r = -1;
  ASSERT_OK (r = gr_refstore_lookup (root, &found, "docker.io/library/ubuntu:22.04", err_));
  CU_ASSERT (r == 1 && strcmp (found, id2) == 0);
  cleanup_free char *nf = NULL;
  ASSERT_OK (r = gr_refstore_lookup (root, &nf, "ubuntu", err_));
  CU_ASSERT_EQUAL (r, 0);

  /* distribution metadata */
  const char *blob = "sha256:4444444444444444444444444444444444444444444444444444444444444444";
  ASSERT_OK (gr_distmeta_add (root, blob, d1, "docker.io/library/ubuntu", err_));
  ASSERT_OK (gr_distmeta_add (root, mdig, d1, "docker.io/library/other", err_));
  ASSERT_OK (gr_distmeta_add (root, blob, d1, "docker.io/library/ubuntu", err_));
  cleanup_free char *v2
      = read_str (root, "image/overlay2/distribution/v2metadata-by-diffid/sha256/%s", d1 + 7);
  cleanup_free char *want_v2
      = xasprintf ("[{\"Digest\":\"%s\",\"SourceRepository\":\"docker.io/library/other\",\"HMAC\":\"\"},"
                   "{\"Digest\":\"%s\",\"SourceRepository\":\"docker.io/library/ubuntu\",\"HMAC\":\"\"}]",
                   mdig, blob);
  CU_ASSERT_STRING_EQUAL (v2, want_v2);
  cleanup_free char *by = read_str (root, "image/overlay2/distribution/diffid-by-digest/sha256/%s", blob + 7);
  CU_ASSERT_STRING_EQUAL (by, d1);
  cleanup_free char *got = NULL;
  ASSERT_OK (r = gr_distmeta_diff_id_by_digest (root, &got, blob, err_));
  CU_ASSERT (r == 1 && strcmp (got, d1) == 0);
  gr_graphroot_free (root);
}

/* The root test_overlay2 and test_stores filled, opened read-only while
   "dockerd" has a write set in layerdb/tmp.  */
static void
test_readonly (void)
{
  cleanup_free char *dir = xasprintf ("%s/ovl", sandbox);
  cleanup_free char *ws = xasprintf ("%s/image/overlay2/layerdb/tmp/write-set-live", dir);
  CU_ASSERT_FATAL (mkdir (ws, 0700) == 0);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open_readonly (&root, dir, "overlay2", err_));
  CU_ASSERT_PTR_NULL (root->driver);
  json_t *ids = NULL;
  ASSERT_OK (gr_imagestore_list (root, &ids, err_));
  CU_ASSERT_EQUAL (json_array_size (ids), 1);
  json_decref (ids);
  char d1[GR_DIGEST_LEN + 1];
  file_diff_id (d1, "base.tar");
  struct gr_layer_info info;
  ASSERT_OK (gr_layerstore_get (root, &info, d1, err_));
  cleanup_free char *found = NULL;
  int r = -1;
  ASSERT_OK (r = gr_refstore_lookup (root, &found, "ubuntu:22.04", err_));
  CU_ASSERT_EQUAL (r, 1);
  /* every writer refuses */
  gr_error_t err = NULL;
  struct gr_layer_writer *w = NULL;
  CU_ASSERT (gr_layer_writer_new (&w, root, NULL, d1, &err) < 0 && gr_error_status (&err) == EROFS);
  gr_error_release (&err);
  CU_ASSERT (gr_refstore_add (root, "x", "1", NULL, found, &err) < 0 && gr_error_status (&err) == EROFS);
  gr_error_release (&err);
  CU_ASSERT (gr_distmeta_add (root, d1, d1, "docker.io/library/x", &err) < 0
             && gr_error_status (&err) == EROFS);
  gr_error_release (&err);
  CU_ASSERT (gr_imagestore_put (root, NULL, "{}", 2, &err) < 0 && gr_error_status (&err) == EROFS);
  gr_error_release (&err);
  CU_ASSERT (gr_imagestore_set_last_updated (root, found, &err) < 0 && gr_error_status (&err) == EROFS);
  gr_error_release (&err);
  gr_graphroot_free (root);
  /* dockerd's write set is still there */
  struct stat st;
  CU_ASSERT (stat (ws, &st) == 0);
  rmdir (ws);
  /* a missing root or driver: an error, and nothing created */
  cleanup_free char *none = xasprintf ("%s/no-such-root", sandbox);
  CU_ASSERT (gr_graphroot_open_readonly (&root, none, "overlay2", &err) < 0
             && gr_error_status (&err) == ENOENT);
  gr_error_release (&err);
  CU_ASSERT (stat (none, &st) < 0);
  CU_ASSERT (gr_graphroot_open_readonly (&root, dir, "vfs", &err) < 0 && gr_error_status (&err) == ENOENT);
  CU_ASSERT (err && strstr (err->msg, "image/vfs") != NULL);
  gr_error_release (&err);
  cleanup_free char *vfs = xasprintf ("%s/image/vfs", dir);
  CU_ASSERT (stat (vfs, &st) < 0);
  CU_ASSERT (gr_graphroot_open_readonly (&root, dir, "../x", &err) < 0 && gr_error_status (&err) == EINVAL);
  gr_error_release (&err);
}

static void
test_open_with (void)
{
  cleanup_free char *dir = xasprintf ("%s/plugin-root", sandbox);
  cleanup_free char *home = xasprintf ("%s/propagated/my-plugin", sandbox);
  struct gr_graphroot *root = NULL;
  ASSERT_OK (gr_graphroot_open_with (&root, dir, "my-plugin", "overlay2", home, err_));
  cleanup_free char *base = NULL;
  ASSERT_OK (reg (root, &base, NULL, "base.tar", NULL, err_));
  cleanup_free char *c1 = read_str (root, "image/my-plugin/layerdb/sha256/%s/cache-id", base + 7);
  CU_ASSERT_FATAL (c1 != NULL);
  cleanup_free char *diff = xasprintf ("%s/%s/diff/etc/hosts", home, c1);
  struct stat st;
  CU_ASSERT (stat (diff, &st) == 0);
  CU_ASSERT (!exists_at (root->root_fd, "my-plugin"));
  gr_graphroot_free (root);
  static const char *const bad[][2]
      = { { "../x", "aufs" }, { "a/b", "aufs" }, { "x", "zfs" }, { "", "vfs" } };
  for (size_t i = 0; i < sizeof (bad) / sizeof (bad[0]); i++)
    {
      gr_error_t err = NULL;
      CU_ASSERT (gr_graphroot_open_with (&root, dir, bad[i][0], bad[i][1], NULL, &err) < 0);
      gr_error_release (&err);
    }
  gr_error_t err = NULL;
  CU_ASSERT (gr_graphroot_open (&root, dir, "devicemapper", &err) < 0);
  gr_error_release (&err);
}

/* A process named dockerd (a copy of python3 sleeping) with ARGS.  */
static pid_t
fake_dockerd (const char *exe, const char *cwd, const char *a1, const char *a2)
{
  pid_t pid = fork ();
  if (pid == 0)
    {
      if (chdir (cwd) < 0)
        _exit (1);
      execl (exe, "dockerd", "-c", "import time; time.sleep(20)", a1, a2, (char *)NULL);
      _exit (1);
    }
  usleep (300000);
  return pid;
}

static void
test_dockerd_running (void)
{
  int r = -1;
  pid_t pid = 0;
  cleanup_free char *dir = xasprintf ("%s/running", sandbox);
  CU_ASSERT_EQUAL_FATAL (mkdir (dir, 0700), 0);
  ASSERT_OK (r = gr_graphroot_dockerd_running (&pid, dir, err_));
  CU_ASSERT_EQUAL (r, 0);
  cleanup_free char *exe = xasprintf ("%s/dockerd", sandbox);
  cleanup_free char *cp = xasprintf ("cp /usr/bin/python3 %s", exe);
  if (system (cp) != 0)
    return;
  cleanup_free char *eq = xasprintf ("--data-root=%s", dir);
  cleanup_free char *cfg = xasprintf ("%s/daemon.json", sandbox);
  cleanup_free char *cfg_json = xasprintf ("{\"data-root\": \"%s\"}", dir);
  ASSERT_OK (gr_write_file_atomic (AT_FDCWD, cfg, cfg_json, strlen (cfg_json), 0600, err_));
  const char *cases[][3] = {
    { "/", "--data-root", dir },
    { "/", eq, NULL },
    { "/", "-g", dir },
    { sandbox, "--data-root", "running" },
    { "/", "--config-file", cfg },
  };
  for (size_t i = 0; i < sizeof (cases) / sizeof (cases[0]); i++)
    {
      pid_t child = fake_dockerd (exe, cases[i][0], cases[i][1], cases[i][2]);
      pid = 0;
      ASSERT_OK (r = gr_graphroot_dockerd_running (&pid, dir, err_));
      CU_ASSERT_EQUAL (r, 1);
      CU_ASSERT_EQUAL (pid, child);
      if (r != 1)
        fprintf (stderr, "\ncase %zu not detected\n", i);
      kill (child, SIGKILL);
      waitpid (child, NULL, 0);
    }
  /* another root is not this one */
  pid_t child = fake_dockerd (exe, "/", "--data-root", sandbox);
  ASSERT_OK (r = gr_graphroot_dockerd_running (&pid, dir, err_));
  CU_ASSERT_EQUAL (r, 0);
  kill (child, SIGKILL);
  waitpid (child, NULL, 0);
}

int
main (void)
{
  UNIT_REQUIRE_ROOT ();
  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  CU_pSuite s = CU_add_suite ("layerstore", setup, teardown);
  CU_add_test (s, "chain IDs", test_chain_id);
  CU_add_test (s, "overlay2 layers", test_overlay2);
  CU_add_test (s, "pending parents", test_pending_parent);
  CU_add_test (s, "aborted writers of a chain", test_aborted_chain);
  CU_add_test (s, "interrupted writer", test_interrupted);
  CU_add_test (s, "a stream that is not a tar", test_not_a_tar);
  CU_add_test (s, "vfs layers", test_vfs);
  CU_add_test (s, "reference names", test_names);
  CU_add_test (s, "image, reference, distribution stores", test_stores);
  CU_add_test (s, "read-only open", test_readonly);
  CU_add_test (s, "plugin names and homes", test_open_with);
  CU_add_test (s, "dockerd running", test_dockerd_running);
  return unit_run ();
}

/* libFuzzer target: gr_archive_apply on arbitrary bytes, in each of the
   three whiteout formats, into a fresh layer directory per input.

   Asserted for every input (abort() = a finding): no crash (ASan/UBSan),
   no leaked fd, no leaked memory (LeakSanitizer at exit), and nothing
   outside the layer directory is created, removed or changed.

   With GR_FUZZ_JAIL=DIR the process first enters a private mount
   namespace and chroots into DIR (with /proc bound in), so that even a
   write through an absolute path would land in DIR, where the check sees
   it; tests/fuzz/fuzz.sh runs it that way.  */
#include "config.h"

#include "archive.h"
#include "fsutil.h"
#include "tar-fixup.h"

#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/xattr.h>

int LLVMFuzzerInitialize (int *argc, char ***argv);
int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

#define SBX "/fuzz-sandbox"
#define MAX_SNAP 64

struct snap_entry
{
  char name[64];
  struct stat st;
  ssize_t xattr_len;
};

struct snap
{
  size_t n;
  struct snap_entry e[MAX_SNAP];
};

/* Names of DIR (one level) that the fuzzer itself may add to.  */
static bool
ignored (const char *dir, const char *name)
{
  return strcmp (dir, "/") == 0
         && (strcmp (name, "corpus") == 0 || strcmp (name, "artifacts") == 0 || strcmp (name, "proc") == 0
             || strcmp (name, "fuzz-sandbox") == 0);
}

static void
take (struct snap *s, const char *dir)
{
  DIR *d = opendir (dir);
  if (d == NULL)
    abort ();
  s->n = 0;
  for (struct dirent *de; (de = readdir (d));)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0 || ignored (dir, de->d_name))
        continue;
      if (strcmp (dir, SBX) == 0 && strcmp (de->d_name, "layer") == 0)
        continue;
      if (s->n == MAX_SNAP)
        abort ();
      struct snap_entry *e = &s->e[s->n++];
      snprintf (e->name, sizeof (e->name), "%s", de->d_name);
      if (fstatat (dirfd (d), de->d_name, &e->st, AT_SYMLINK_NOFOLLOW) < 0)
        abort ();
      char *p = xasprintf ("%s/%s", dir, de->d_name);
      e->xattr_len = llistxattr (p, NULL, 0);
      free (p);
    }
  closedir (d);
}

static void
compare (const struct snap *a, const struct snap *b, const char *dir)
{
  if (a->n != b->n)
    {
      fprintf (stderr, "BREAKOUT: %s had %zu entries, now %zu\n", dir, a->n, b->n);
      for (size_t i = 0; i < b->n; i++)
        fprintf (stderr, "  now: %s\n", b->e[i].name);
      abort ();
    }
  for (size_t i = 0; i < a->n; i++)
    {
      const struct snap_entry *x = &a->e[i];
      const struct snap_entry *y = NULL;
      for (size_t j = 0; j < b->n; j++)
        if (strcmp (b->e[j].name, x->name) == 0)
          y = &b->e[j];
      if (y == NULL || x->st.st_ino != y->st.st_ino || x->st.st_mode != y->st.st_mode
          || x->st.st_uid != y->st.st_uid || x->st.st_gid != y->st.st_gid || x->st.st_size != y->st.st_size
          || x->st.st_nlink != y->st.st_nlink || x->st.st_mtim.tv_sec != y->st.st_mtim.tv_sec
          || x->st.st_mtim.tv_nsec != y->st.st_mtim.tv_nsec || x->xattr_len != y->xattr_len)
        {
          fprintf (stderr, "BREAKOUT: %s/%s changed\n", dir, x->name);
          abort ();
        }
    }
}

static const char *const watched[] = { "/", SBX, SBX "/outside", SBX "/outside/dir" };
#define N_WATCHED (sizeof (watched) / sizeof (watched[0]))
static struct snap before[N_WATCHED];
static int sbx_fd = -1;

static void
must (bool ok, const char *what)
{
  if (!ok)
    {
      perror (what);
      abort ();
    }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  const char *jail = getenv ("GR_FUZZ_JAIL");
  if (jail)
    {
      char *proc = xasprintf ("%s/proc", jail);
      must (unshare (CLONE_NEWNS) == 0, "unshare");
      must (mount (NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0, "mount private");
      must (mkdir (proc, 0755) == 0 || errno == EEXIST, "mkdir proc");
      must (mount ("/proc", proc, NULL, MS_BIND | MS_REC, NULL) == 0, "bind /proc");
      must (chroot (jail) == 0, "chroot");
      free (proc);
      /* libFuzzer's relative corpus paths keep working: cwd is the jail.  */
    }
  else
    fprintf (stderr, "fuzz-apply: no GR_FUZZ_JAIL: absolute-path breakouts would go unnoticed\n");
  {
    gr_error_t err = NULL;
    if (gr_rm_rf_at (AT_FDCWD, SBX, &err) < 0)
      abort ();
  }
  must (mkdir (SBX, 0755) == 0, "mkdir sandbox");
  must (mkdir (SBX "/outside", 0755) == 0, "mkdir outside");
  must (mkdir (SBX "/outside/dir", 0755) == 0, "mkdir outside/dir");
  int fd = open (SBX "/outside/victim", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  must (fd >= 0 && write (fd, "victim\n", 7) == 7, "victim");
  close (fd);
  must (symlink ("victim", SBX "/outside/victim-link") == 0, "victim-link");
  /* The fuzzer's names often end in these: give them something to hit.  */
  must (symlink ("../outside", SBX "/up") == 0, "up");
  sbx_fd = open (SBX, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  must (sbx_fd >= 0, "open sandbox");
  for (size_t i = 0; i < N_WATCHED; i++)
    take (&before[i], watched[i]);
  return 0;
}

static int
lowest_free_fd (void)
{
  int fd = dup (0);
  close (fd);
  return fd;
}

static void
one (const uint8_t *data, size_t size, enum gr_whiteout_format f)
{
  gr_error_t err = NULL;
  struct gr_apply_opts opts = { .whiteouts = f };
  int free_fd = lowest_free_fd ();

  must (mkdirat (sbx_fd, "layer", 0755) == 0, "mkdir layer");
  int layer = openat (sbx_fd, "layer", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  must (layer >= 0, "open layer");
  /* What a lower layer or an earlier entry may have left.  */
  must (symlinkat ("../outside", layer, "pre-up") == 0, "pre-up");
  must (symlinkat ("/", layer, "pre-abs") == 0, "pre-abs");
  must (mkdirat (layer, "pre-d", 0755) == 0, "pre-d");
  int tar = memfd_create ("tar", MFD_CLOEXEC);
  must (tar >= 0, "memfd");
  if (size)
    must (write (tar, data, size) == (ssize_t) size, "write memfd");
  must (lseek (tar, 0, SEEK_SET) == 0, "lseek");

  (void) gr_archive_apply (layer, tar, &opts, &err);
  gr_error_release (&err);
  close (tar);

  struct stat st;
  must (fstat (layer, &st) == 0 && S_ISDIR (st.st_mode), "layer still a dir");
  close (layer);
  if (lowest_free_fd () != free_fd)
    {
      fprintf (stderr, "FD LEAK in gr_archive_apply (format %s)\n", gr_whiteout_format_name (f));
      abort ();
    }
  for (size_t i = 0; i < N_WATCHED; i++)
    {
      struct snap now;
      take (&now, watched[i]);
      compare (&before[i], &now, watched[i]);
    }
  {
    char buf[16] = { 0 };
    int v = open (SBX "/outside/victim", O_RDONLY | O_CLOEXEC);
    must (v >= 0 && read (v, buf, sizeof buf) == 7 && memcmp (buf, "victim\n", 7) == 0, "victim intact");
    close (v);
  }
  if (gr_rm_rf_at (sbx_fd, "layer", &err) < 0)
    {
      fprintf (stderr, "cannot clean the layer: %s\n", gr_error_msg (&err));
      abort ();
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  one (data, size, GR_WHITEOUT_AUFS);
  one (data, size, GR_WHITEOUT_OVERLAY);
  one (data, size, GR_WHITEOUT_DELETE);
  return 0;
}

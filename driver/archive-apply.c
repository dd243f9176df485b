/* Apply a layer tar to a layer directory.

   libarchive only parses the stream; every file is written here with
   calls relative to directory fds: the parent of each entry is opened with
   openat2 RESOLVE_IN_ROOT (so absolute symlinks of the layer resolve inside
   it) and the last component is created in that parent without following
   a symlink.  Metadata is set on the created inode (fd) or with
   *_NOFOLLOW calls, never through a symlink.  Whiteouts are stored
   literally (aufs), converted (overlay) or applied (delete), as moby's
   Untar / overlay converter / UnpackLayer do.  */
#include "config.h"

#include "archive.h"
#include "fsutil.h"
#include "whiteout.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <locale.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define READ_BUF_SIZE (128 * 1024)

/* aufs pseudo-links: old aufs layer tars carry `.wh..wh.plnk/<ino>.<n>`
   files that other entries hardlink to.  Like moby, the files are kept
   aside (in a `.wh..wh.` name, which no tar entry can reach) for the
   hardlinks, then dropped.  */
#define AUFS_PLNK_DIR GR_WH_META_PREFIX "plnk"
#define PLNK_STASH GR_WH_META_PREFIX "graphroot-plnk"

/* A set of relative paths (the entries this tar created), for opaque
   whiteouts in the delete format.  Open addressing, FNV-1a.  */
struct strset
{
  char **slots;
  size_t cap;
  size_t n;
};

static uint64_t
str_hash (const char *s)
{
  uint64_t h = 1469598103934665603ULL;
  for (; *s; s++)
    h = (h ^ (unsigned char) *s) * 1099511628211ULL;
  return h;
}

static bool
strset_has (const struct strset *set, const char *s)
{
  if (set->cap == 0)
    return false;
  for (size_t i = str_hash (s) & (set->cap - 1);; i = (i + 1) & (set->cap - 1))
    {
      if (set->slots[i] == NULL)
        return false;
      if (strcmp (set->slots[i], s) == 0)
        return true;
    }
}

static void
strset_add (struct strset *set, const char *s)
{
  if ((set->n + 1) * 2 > set->cap)
    {
      size_t ncap = set->cap ? set->cap * 2 : 64;
      char **nslots = xzalloc (ncap * sizeof (char *));
      for (size_t j = 0; j < set->cap; j++)
        if (set->slots[j])
          {
            size_t i = str_hash (set->slots[j]) & (ncap - 1);
            while (nslots[i])
              i = (i + 1) & (ncap - 1);
            nslots[i] = set->slots[j];
          }
      free (set->slots);
      set->slots = nslots;
      set->cap = ncap;
    }
  size_t i = str_hash (s) & (set->cap - 1);
  for (; set->slots[i]; i = (i + 1) & (set->cap - 1))
    if (strcmp (set->slots[i], s) == 0)
      return;
  set->slots[i] = xstrdup (s);
  set->n++;
}

static void
strset_free (struct strset *set)
{
  for (size_t i = 0; i < set->cap; i++)
    free (set->slots[i]);
  free (set->slots);
}

/* A directory whose times are set after all its children.  */
struct dir_time
{
  char *path;
  dev_t dev;
  ino_t ino;
  struct timespec ts[2];
};

struct apply
{
  int root; /* O_RDONLY fd of the layer directory */
  enum gr_whiteout_format wf;
  mode_t implicit_dir_mode; /* 0: by wf */
  struct archive *a;
  struct dir_time *dirs;
  size_t ndirs;
  size_t capdirs;
  struct strset unpacked; /* GR_WHITEOUT_DELETE only */
  /* The last parent directory opened: a tar lists siblings together.
     Stale once anything was removed (a path component may have changed).  */
  char *cache_path;
  int cache_fd;
  bool cache_stale;
};

struct reader
{
  int fd;
  char *buf;
};

/* read(2) that waits on a non-blocking FD and retries EINTR.  */
static ssize_t
read_wait (int fd, char *buf, size_t len)
{
  for (;;)
    {
      ssize_t r = read (fd, buf, len);
      if (r >= 0)
        return r;
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK)
        return -1;
      struct pollfd p = { .fd = fd, .events = POLLIN };
      if (poll (&p, 1, -1) < 0 && errno != EINTR)
        return -1;
    }
}

static la_ssize_t
read_cb (struct archive *a, void *data, const void **out)
{
  struct reader *rd = data;
  ssize_t r = read_wait (rd->fd, rd->buf, READ_BUF_SIZE);
  if (r < 0)
    {
      archive_set_error (a, errno, "read layer stream: %s", strerror (errno));
      return -1;
    }
  *out = rd->buf;
  return r;
}

static int
drain (int fd, char *buf, gr_error_t *err)
{
  for (;;)
    {
      ssize_t r = read_wait (fd, buf, READ_BUF_SIZE);
      if (r < 0)
        return gr_make_error (err, errno, "read layer stream");
      if (r == 0)
        return 0;
    }
}

/* NAME with bytes outside printable ASCII as \xNN, for messages.  */
static char *
printable (const char *name)
{
  cleanup_buf struct gr_buf b = { 0 };
  for (const unsigned char *p = (const unsigned char *) name; *p && b.len < 512; p++)
    if (*p < 0x20 || *p >= 0x7f || *p == '\\')
      gr_buf_printf (&b, "\\x%02x", *p);
    else
      gr_buf_append (&b, p, 1);
  if (b.data == NULL)
    gr_buf_append (&b, "", 0);
  return gr_buf_steal (&b);
}

/* Turn a tar name into a clean relative path ("" for the root): `./`
   prefixes, empty and `.` components dropped.  Absolute names and `..`
   components are refused.  */
static int
clean_name (char **out, const char *raw, const char *what, gr_error_t *err)
{
  size_t len = strlen (raw);
  if (len >= PATH_MAX)
    return gr_make_error (err, ENAMETOOLONG, "%s is %zu bytes long", what, len);
  if (raw[0] == '/')
    return gr_make_error (err, EPERM, "absolute %s refused", what);
  cleanup_buf struct gr_buf b = { 0 };
  gr_buf_append (&b, "", 0);
  const char *p = raw;
  while (*p)
    {
      const char *slash = strchr (p, '/');
      size_t n = slash ? (size_t) (slash - p) : strlen (p);
      if (n == 2 && p[0] == '.' && p[1] == '.')
        return gr_make_error (err, EPERM, "`..` in %s refused", what);
      if (n > 0 && ! (n == 1 && p[0] == '.'))
        {
          if (b.len)
            gr_buf_append (&b, "/", 1);
          gr_buf_append (&b, p, n);
        }
      p += n;
      if (*p == '/')
        p++;
    }
  *out = gr_buf_steal (&b);
  return 0;
}

static bool
is_aufs_meta_path (const char *rel)
{
  return strncmp (rel, GR_WH_META_PREFIX, strlen (GR_WH_META_PREFIX)) == 0
         && strcmp (rel, GR_WH_OPAQUE) != 0;
}

static int
open_in_root_quiet (int root, const char *path, int flags)
{
  gr_error_t e = NULL;
  int fd = gr_open_in_root (root, path, flags, 0, &e);
  if (fd < 0)
    {
      errno = gr_error_status (&e);
      gr_error_release (&e);
    }
  return fd;
}

/* Open the directory PATH of the layer ("" = the root) without creating
   anything.  IN_ROOT: symlinks resolve inside the layer; otherwise no
   symlink may be crossed.  Returns -1 with errno set.  */
static int
open_dir_quiet (struct apply *ap, const char *path, bool in_root)
{
  if (*path == '\0')
    return openat (ap->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (in_root)
    return open_in_root_quiet (ap->root, path, O_RDONLY | O_DIRECTORY);
  gr_error_t e = NULL;
  int fd = gr_open_dir_at (ap->root, path, &e);
  if (fd < 0)
    {
      errno = gr_error_status (&e);
      gr_error_release (&e);
    }
  return fd;
}

/* Parent directories a tar does not list are made as dockerd makes them:
   the caller's mode, else 0600 as UnpackLayer applying deletions (vfs) and
   0777 less the umask as Untar (aufs, overlay2 with native diff).  */
static mode_t
implicit_dir_mode (const struct apply *ap)
{
  if (ap->implicit_dir_mode)
    return ap->implicit_dir_mode;
  return ap->wf == GR_WHITEOUT_DELETE ? 0600 : 0755;
}

/* open_dir_quiet, creating missing components (implicit_dir_mode) if
   CREATE.  Returns -1 with errno ENOENT and no error set when !CREATE and
   PATH is missing.  */
static int
open_parent (struct apply *ap, const char *path, bool create, bool in_root, gr_error_t *err)
{
  const char *how = in_root ? "" : " without following symlinks";
  int fd = open_dir_quiet (ap, path, in_root);
  if (fd >= 0)
    return fd;
  /* ENOTDIR: maybe an overlay whiteout, replaced below.  */
  bool maybe_whiteout = errno == ENOTDIR && create && ap->wf == GR_WHITEOUT_OVERLAY;
  if (errno != ENOENT && ! maybe_whiteout)
    {
      int saved = errno;
      cleanup_free char *pp = printable (path);
      return gr_make_error (err, saved, "open directory `%s`%s", pp, how);
    }
  if (! create)
    {
      errno = ENOENT;
      return -1;
    }

  /* Create the missing components one by one.  */
  cleanup_close int cur = openat (ap->root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (cur < 0)
    return gr_make_error (err, errno, "open layer directory");
  cleanup_free char *p = xstrdup (path);
  char *comp = p;
  for (;;)
    {
      char *slash = strchr (comp, '/');
      if (slash)
        *slash = '\0';
      int next;
      if (in_root)
        next = open_in_root_quiet (ap->root, p, O_RDONLY | O_DIRECTORY);
      else
        next = openat (cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      bool replaced = false;
      if (next < 0 && errno == ENOTDIR && ap->wf == GR_WHITEOUT_OVERLAY)
        {
          /* Deleted earlier in this tar, now a directory again: the new
             directory is opaque, as the whiteout hid the lower one.  */
          struct stat st;
          if (fstatat (cur, comp, &st, AT_SYMLINK_NOFOLLOW) == 0 && gr_whiteout_is_overlay_file (&st)
              && unlinkat (cur, comp, 0) == 0)
            {
              ap->cache_stale = true;
              replaced = true;
              errno = ENOENT;
            }
          else
            errno = ENOTDIR;
        }
      if (next < 0 && errno == ENOENT)
        {
          if (mkdirat (cur, comp, implicit_dir_mode (ap)) < 0 && errno != EEXIST)
            {
              int saved = errno;
              cleanup_free char *pp = printable (p);
              return gr_make_error (err, saved, "mkdir `%s`", pp);
            }
          if (in_root)
            next = open_in_root_quiet (ap->root, p, O_RDONLY | O_DIRECTORY);
          else
            next = openat (cur, comp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
      if (next < 0)
        {
          int saved = errno;
          cleanup_free char *pp = printable (p);
          return gr_make_error (err, saved, "open directory `%s`%s", pp, how);
        }
      if (replaced && gr_whiteout_make_opaque (next, GR_WHITEOUT_OVERLAY, err) < 0)
        {
          close (next);
          return -1;
        }
      close (cur);
      cur = next;
      if (! slash)
        break;
      *slash = '/';
      comp = slash + 1;
    }
  return gr_steal_fd (cur);
}

/* The parent directory REL of an ordinary entry, resolved in the layer
   root and created if missing.  The fd is borrowed from the cache.  */
static int
parent_fd (struct apply *ap, const char *rel, gr_error_t *err)
{
  if (ap->cache_path && ! ap->cache_stale && strcmp (ap->cache_path, rel) == 0)
    return ap->cache_fd;
  int fd = open_parent (ap, rel, true, true, err);
  if (fd < 0)
    return -1;
  if (ap->cache_fd >= 0)
    close (ap->cache_fd);
  free (ap->cache_path);
  ap->cache_path = xstrdup (rel);
  ap->cache_fd = fd;
  ap->cache_stale = false;
  return fd;
}

/* Does symlink TARGET, placed in directory DIR (relative, "" = root),
   point outside the layer when read lexically (moby refuses those)?  */
static bool
symlink_escapes (const char *dir, const char *target)
{
  if (target[0] == '/')
    return false;
  long depth = 0;
  if (*dir)
    {
      depth = 1;
      for (const char *p = dir; *p; p++)
        depth += *p == '/';
    }
  const char *p = target;
  while (*p)
    {
      const char *slash = strchr (p, '/');
      size_t n = slash ? (size_t) (slash - p) : strlen (p);
      if (n == 2 && p[0] == '.' && p[1] == '.')
        {
          if (--depth < 0)
            return true;
        }
      else if (n > 0 && ! (n == 1 && p[0] == '.'))
        depth++;
      p += n;
      if (*p == '/')
        p++;
    }
  return false;
}

static bool
xattr_refused (const char *name)
{
  /* overlayfs metadata must never come from a tar: it would forge opacity,
     redirects or metacopy.  */
  return strncmp (name, "trusted.overlay.", 16) == 0 || strncmp (name, "user.overlay.", 13) == 0;
}

static int
set_times_later (struct apply *ap, const char *rel, int fd, const struct timespec ts[2], gr_error_t *err)
{
  struct stat st;
  if (fstat (fd, &st) < 0)
    return gr_make_error (err, errno, "stat");
  if (ap->ndirs == ap->capdirs)
    {
      ap->capdirs = ap->capdirs ? ap->capdirs * 2 : 64;
      ap->dirs = xrealloc (ap->dirs, ap->capdirs * sizeof (*ap->dirs));
    }
  ap->dirs[ap->ndirs++] = (struct dir_time){ xstrdup (rel), st.st_dev, st.st_ino, { ts[0], ts[1] } };
  return 0;
}

/* Owner, xattrs, mode and times of the inode just created as
   PARENTFD/BASE.  FD is an fd on it (regular file, directory) or -1, in
   which case only *_NOFOLLOW calls are used.  */
static int
apply_meta (struct apply *ap, struct archive_entry *e, int parentfd, const char *base, int fd,
            const char *rel, gr_error_t *err)
{
  struct stat st;
  if (fd >= 0 ? fstat (fd, &st) : fstatat (parentfd, base, &st, AT_SYMLINK_NOFOLLOW))
    return gr_make_error (err, errno, "stat");
  bool is_link = S_ISLNK (st.st_mode);

  la_int64_t uid = archive_entry_uid (e), gid = archive_entry_gid (e);
  if (uid < 0 || uid >= (la_int64_t) UINT32_MAX || gid < 0 || gid >= (la_int64_t) UINT32_MAX)
    return gr_make_error (err, EINVAL, "invalid owner %lld:%lld", (long long) uid, (long long) gid);
  /* Only when it changes anything: chown drops security.capability, which
     a hardlink entry without xattrs (GNU tar) must not take from its
     target.  */
  if ((st.st_uid != (uid_t) uid || st.st_gid != (gid_t) gid)
      && (fd >= 0 ? fchown (fd, (uid_t) uid, (gid_t) gid)
                  : fchownat (parentfd, base, (uid_t) uid, (gid_t) gid, AT_SYMLINK_NOFOLLOW))
             < 0)
    return gr_make_error (err, errno, "chown %lld:%lld", (long long) uid, (long long) gid);

  /* After chown, which drops security.capability.  */
  if (archive_entry_xattr_reset (e) > 0)
    {
      const char *name;
      const void *value;
      size_t size;
      cleanup_free char *proc = NULL;
      while (archive_entry_xattr_next (e, &name, &value, &size) == ARCHIVE_OK)
        {
          if (xattr_refused (name))
            continue;
          int r;
          if (fd >= 0)
            r = fsetxattr (fd, name, value, size, 0);
          else
            {
              if (proc == NULL)
                proc = xasprintf ("/proc/self/fd/%d/%s", parentfd, base);
              r = lsetxattr (proc, name, value, size, 0);
            }
          /* As moby: file systems (or symlinks) without xattr support are
             not an error.  */
          if (r < 0 && errno != ENOTSUP && errno != EPERM)
            return gr_make_error (err, errno, "set xattr `%s`", name);
        }
    }

  /* After chown, which drops setuid/setgid.  Never through a symlink.  */
  if (! is_link)
    {
      mode_t mode = archive_entry_perm (e) & 07777;
      int r = fd >= 0 ? fchmod (fd, mode) : fchmodat (parentfd, base, mode, AT_SYMLINK_NOFOLLOW);
      /* glibc emulates AT_SYMLINK_NOFOLLOW through /proc: without /proc,
         a checked non-symlink is changed directly (nobody else writes the
         layer).  */
      if (r < 0 && fd < 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
        r = fchmodat (parentfd, base, mode, 0);
      if (r < 0)
        return gr_make_error (err, errno, "chmod %04o", (unsigned) mode);
    }

  if (! archive_entry_mtime_is_set (e))
    return 0;
  struct timespec ts[2];
  ts[1].tv_sec = archive_entry_mtime (e);
  ts[1].tv_nsec = archive_entry_mtime_nsec (e);
  ts[0] = ts[1];
  if (archive_entry_atime_is_set (e))
    {
      struct timespec at = { archive_entry_atime (e), archive_entry_atime_nsec (e) };
      /* As moby: the access time is never before the modification time.  */
      if (at.tv_sec > ts[1].tv_sec || (at.tv_sec == ts[1].tv_sec && at.tv_nsec > ts[1].tv_nsec))
        ts[0] = at;
    }
  if (S_ISDIR (st.st_mode) && fd >= 0)
    return set_times_later (ap, rel, fd, ts, err);
  if ((fd >= 0 ? futimens (fd, ts) : utimensat (parentfd, base, ts, AT_SYMLINK_NOFOLLOW)) < 0)
    return gr_make_error (err, errno, "set times");
  return 0;
}

static int
pwrite_all (int fd, const char *buf, size_t len, off_t off, gr_error_t *err)
{
  while (len > 0)
    {
      ssize_t w = pwrite (fd, buf, len, off);
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0)
        return gr_make_error (err, errno, "write");
      buf += w;
      len -= (size_t) w;
      off += w;
    }
  return 0;
}

static int
write_data (struct apply *ap, struct archive_entry *e, int fd, gr_error_t *err)
{
  off_t end = 0;
  for (;;)
    {
      const void *buf;
      size_t size;
      la_int64_t off;
      int r = archive_read_data_block (ap->a, &buf, &size, &off);
      if (r == ARCHIVE_EOF)
        break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        return gr_make_error (err, archive_errno (ap->a) > 0 ? archive_errno (ap->a) : EIO,
                              "layer tar: %s", archive_error_string (ap->a));
      if (off < 0)
        return gr_make_error (err, EINVAL, "layer tar: negative data offset");
      if (size && pwrite_all (fd, buf, size, (off_t) off, err) < 0)
        return -1;
      if ((off_t) (off + (la_int64_t) size) > end)
        end = (off_t) (off + (la_int64_t) size);
    }
  /* Trailing holes of sparse files.  */
  if (archive_entry_size_is_set (e) && archive_entry_size (e) > end
      && ftruncate (fd, (off_t) archive_entry_size (e)) < 0)
    return gr_make_error (err, errno, "truncate");
  return 0;
}

static int
create_hardlink (struct apply *ap, struct archive_entry *e, int parentfd, const char *base,
                 gr_error_t *err)
{
  const char *raw = archive_entry_hardlink (e);
  cleanup_free char *target = NULL;
  if (clean_name (&target, raw, "hardlink target", err) < 0)
    return -1;
  if (*target == '\0')
    return gr_make_error (err, EPERM, "hardlink to the layer root refused");
  cleanup_close int tfd = -1;
  if (strncmp (target, AUFS_PLNK_DIR "/", strlen (AUFS_PLNK_DIR) + 1) == 0)
    {
      /* A pseudo-link kept aside earlier in this tar.  */
      cleanup_free char *stashed = xasprintf (PLNK_STASH "/%s", strrchr (target, '/') + 1);
      tfd = openat (ap->root, stashed, O_PATH | O_NOFOLLOW | O_CLOEXEC);
      if (tfd < 0)
        return gr_make_error (err, errno, "invalid aufs hardlink");
    }
  else if (strncmp (target, GR_WH_META_PREFIX, strlen (GR_WH_META_PREFIX)) == 0)
    return gr_make_error (err, EPERM, "hardlink into aufs metadata refused");
  else
    tfd = open_in_root_quiet (ap->root, target, O_PATH | O_NOFOLLOW);
  if (tfd < 0)
    {
      cleanup_free char *t = printable (target);
      return gr_make_error (err, errno, "hardlink target `%s`", t);
    }
  struct stat st;
  if (fstat (tfd, &st) < 0)
    return gr_make_error (err, errno, "stat hardlink target");
  if (S_ISDIR (st.st_mode))
    return gr_make_error (err, EPERM, "hardlink to a directory refused");
  if (linkat (tfd, "", parentfd, base, AT_EMPTY_PATH) == 0)
    return 0;
  if (errno != ENOENT)
    return gr_make_error (err, errno, "link");
  /* AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH: go through /proc instead.  */
  cleanup_free char *proc = xasprintf ("/proc/self/fd/%d", tfd);
  if (linkat (AT_FDCWD, proc, parentfd, base, AT_SYMLINK_FOLLOW) < 0)
    return gr_make_error (err, errno, "link");
  return 0;
}

/* Create the entry E as PARENTFD/BASE (REL is its path in the layer).  */
static int
create_entry (struct apply *ap, struct archive_entry *e, int parentfd, const char *base,
              const char *parent_rel, const char *rel, gr_error_t *err)
{
  const char *hardlink = archive_entry_hardlink (e);
  mode_t type = archive_entry_filetype (e);
  bool is_dir = hardlink == NULL && type == AE_IFDIR;
  struct stat st;
  bool exists = fstatat (parentfd, base, &st, AT_SYMLINK_NOFOLLOW) == 0;
  if (! exists && errno != ENOENT)
    return gr_make_error (err, errno, "stat");
  bool over_whiteout = exists && ap->wf == GR_WHITEOUT_OVERLAY && gr_whiteout_is_overlay_file (&st);

  /* A later entry replaces an earlier one; only a directory over a
     directory merges.  */
  if (exists && ! (is_dir && S_ISDIR (st.st_mode)))
    {
      ap->cache_stale = true;
      if (gr_rm_rf_at (parentfd, base, err) < 0)
        return -1;
      exists = false;
    }

  cleanup_close int fd = -1;
  if (hardlink)
    {
      if (create_hardlink (ap, e, parentfd, base, err) < 0)
        return -1;
    }
  else
    switch (type)
      {
      case AE_IFREG:
        fd = openat (parentfd, base, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0)
          return gr_make_error (err, errno, "create");
        if (write_data (ap, e, fd, err) < 0)
          return -1;
        break;

      case AE_IFDIR:
        if (! exists && mkdirat (parentfd, base, 0700) < 0)
          return gr_make_error (err, errno, "mkdir");
        fd = openat (parentfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
          return gr_make_error (err, errno, "open directory");
        /* Deleted then re-created in this layer: nothing of the lower
           layers shows through.  */
        if (over_whiteout && gr_whiteout_make_opaque (fd, GR_WHITEOUT_OVERLAY, err) < 0)
          return -1;
        break;

      case AE_IFLNK:
        {
          const char *target = archive_entry_symlink (e);
          if (target == NULL || *target == '\0')
            return gr_make_error (err, EINVAL, "symlink without a target");
          if (strlen (target) >= PATH_MAX)
            return gr_make_error (err, ENAMETOOLONG, "symlink target is too long");
          if (symlink_escapes (parent_rel, target))
            {
              cleanup_free char *t = printable (target);
              return gr_make_error (err, EPERM, "symlink to `%s` points outside the layer", t);
            }
          if (symlinkat (target, parentfd, base) < 0)
            return gr_make_error (err, errno, "symlink");
          break;
        }

      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO:
        {
          dev_t dev = type == AE_IFIFO ? 0
                                       : makedev (archive_entry_rdevmajor (e), archive_entry_rdevminor (e));
          if (mknodat (parentfd, base, type | 0600, dev) < 0)
            return gr_make_error (err, errno, "mknod");
          break;
        }

      default:
        return gr_make_error (err, ENOTSUP, "unsupported entry type 0%o", (unsigned) type);
      }

  if (apply_meta (ap, e, parentfd, base, fd, rel, err) < 0)
    return -1;
  if (ap->wf == GR_WHITEOUT_DELETE)
    strset_add (&ap->unpacked, rel);
  return 0;
}

/* Delete format, opaque directory DFD (path PREFIX): remove everything
   below it that this tar did not create.  */
static int
clear_opaque (struct apply *ap, int dfd, const char *prefix, gr_error_t *err)
{
  char **names = NULL;
  size_t n = 0;
  int ret = 0;
  {
    int dup_fd = dup (dfd);
    if (dup_fd < 0)
      return gr_make_error (err, errno, "dup");
    cleanup_dir DIR *d = fdopendir (dup_fd);
    if (d == NULL)
      {
        close (dup_fd);
        {
          int saved = errno;
          cleanup_free char *pp = printable (prefix);
          return gr_make_error (err, saved, "opendir `%s`", pp);
        }
      }
    for (struct dirent *de; (errno = 0, de = readdir (d));)
      {
        if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
          continue;
        names = xrealloc (names, (n + 1) * sizeof (char *));
        names[n++] = xstrdup (de->d_name);
      }
    if (errno)
      {
        int saved = errno;
        cleanup_free char *pp = printable (prefix);
        ret = gr_make_error (err, saved, "readdir `%s`", pp);
      }
  }
  for (size_t i = 0; i < n && ret == 0; i++)
    {
      cleanup_free char *p = *prefix ? xasprintf ("%s/%s", prefix, names[i]) : xstrdup (names[i]);
      if (! strset_has (&ap->unpacked, p))
        {
          ret = gr_rm_rf_at (dfd, names[i], err);
          continue;
        }
      struct stat st;
      if (fstatat (dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0 || ! S_ISDIR (st.st_mode))
        continue;
      cleanup_close int child = openat (dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0)
        {
          int saved = errno;
          cleanup_free char *pp = printable (p);
          ret = gr_make_error (err, saved, "open directory `%s`", pp);
        }
      else
        ret = clear_opaque (ap, child, p, err);
    }
  for (size_t i = 0; i < n; i++)
    free (names[i]);
  free (names);
  return ret;
}

/* A `.wh.` entry in the overlay or delete format.  */
static int
apply_whiteout (struct apply *ap, struct archive_entry *e, const char *parent_rel,
                enum gr_whiteout_kind kind, const char *target, gr_error_t *err)
{
  bool create = ap->wf == GR_WHITEOUT_OVERLAY;
  ap->cache_stale = true;
  cleanup_close int pfd = open_parent (ap, parent_rel, create, false, err);
  if (pfd < 0)
    return (errno == ENOENT && ! create && (err == NULL || *err == NULL)) ? 0 : -1;

  if (ap->wf == GR_WHITEOUT_OVERLAY)
    {
      if (kind == GR_WH_OPAQUE_DIR)
        return gr_whiteout_make_opaque (pfd, GR_WHITEOUT_OVERLAY, err);
      if (gr_rm_rf_at (pfd, target, err) < 0 || gr_whiteout_create (pfd, target, GR_WHITEOUT_OVERLAY, err) < 0)
        return -1;
      la_int64_t uid = archive_entry_uid (e), gid = archive_entry_gid (e);
      if (uid >= 0 && uid < (la_int64_t) UINT32_MAX && gid >= 0 && gid < (la_int64_t) UINT32_MAX
          && fchownat (pfd, target, (uid_t) uid, (gid_t) gid, AT_SYMLINK_NOFOLLOW) < 0)
        return gr_make_error (err, errno, "chown whiteout");
      /* The entry's mtime (moby leaves "now"): a diff of this layer then
         gives back the same tar.  */
      if (archive_entry_mtime_is_set (e))
        {
          struct timespec ts[2] = { { archive_entry_mtime (e), archive_entry_mtime_nsec (e) },
                                    { archive_entry_mtime (e), archive_entry_mtime_nsec (e) } };
          if (utimensat (pfd, target, ts, AT_SYMLINK_NOFOLLOW) < 0)
            return gr_make_error (err, errno, "set whiteout times");
        }
      return 0;
    }

  /* GR_WHITEOUT_DELETE */
  if (kind == GR_WH_OPAQUE_DIR)
    return clear_opaque (ap, pfd, parent_rel, err);
  return gr_rm_rf_at (pfd, target, err);
}

static int
apply_entry (struct apply *ap, struct archive_entry *e, gr_error_t *err)
{
  const char *raw = archive_entry_pathname (e);
  if (raw == NULL)
    return gr_make_error (err, EINVAL, "entry without a name");
  cleanup_free char *rel = NULL;
  if (clean_name (&rel, raw, "name", err) < 0)
    return -1;

  if (*rel == '\0')
    {
      /* `.` or `./`: the metadata of the layer root.  */
      if (archive_entry_hardlink (e) || archive_entry_filetype (e) != AE_IFDIR)
        return gr_make_error (err, EPERM, "the layer root can only be a directory");
      return apply_meta (ap, e, ap->root, ".", ap->root, "", err);
    }

  /* aufs internals (.wh..wh.plnk/..., .wh..wh.aufs) are not layer content.  */
  if (strncmp (rel, AUFS_PLNK_DIR "/", strlen (AUFS_PLNK_DIR) + 1) == 0
      && archive_entry_filetype (e) == AE_IFREG && archive_entry_hardlink (e) == NULL)
    {
      if (mkdirat (ap->root, PLNK_STASH, 0700) < 0 && errno != EEXIST)
        return gr_make_error (err, errno, "mkdir " PLNK_STASH);
      cleanup_close int sfd = openat (ap->root, PLNK_STASH, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (sfd < 0)
        return gr_make_error (err, errno, "open " PLNK_STASH);
      const char *b = strrchr (rel, '/') + 1;
      return create_entry (ap, e, sfd, b, PLNK_STASH, rel, err);
    }
  if (is_aufs_meta_path (rel))
    return 0;

  char *slash = strrchr (rel, '/');
  const char *base = slash ? slash + 1 : rel;
  cleanup_free char *parent_rel = slash ? xstrndup (rel, (size_t) (slash - rel)) : xstrdup ("");

  enum gr_whiteout_kind kind;
  const char *target = NULL;
  if (gr_whiteout_classify_name (base, &kind, &target, err) < 0)
    return -1;
  if (kind == GR_WH_INTERNAL)
    return 0;
  bool whiteout = kind == GR_WH_FILE || kind == GR_WH_OPAQUE_DIR;
  if (whiteout && ap->wf != GR_WHITEOUT_AUFS)
    return apply_whiteout (ap, e, parent_rel, kind, target, err);

  /* Whiteouts (kept as files in the aufs format) never go through a
     symlink; other entries resolve symlinks inside the layer.  */
  if (whiteout)
    {
      cleanup_close int wfd = open_parent (ap, parent_rel, true, false, err);
      if (wfd < 0)
        return -1;
      return create_entry (ap, e, wfd, base, parent_rel, rel, err);
    }
  int pfd = parent_fd (ap, parent_rel, err);
  if (pfd < 0)
    return -1;
  return create_entry (ap, e, pfd, base, parent_rel, rel, err);
}

static int
finish_dirs (struct apply *ap, gr_error_t *err)
{
  for (size_t i = 0; i < ap->ndirs; i++)
    {
      struct dir_time *d = &ap->dirs[i];
      cleanup_close int fd = *d->path ? open_in_root_quiet (ap->root, d->path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW)
                                      : dup (ap->root);
      struct stat st;
      /* Removed or replaced by a later entry: nothing to do.  */
      if (fd < 0 || fstat (fd, &st) < 0 || st.st_dev != d->dev || st.st_ino != d->ino)
        continue;
      if (futimens (fd, d->ts) < 0)
        {
          cleanup_free char *p = printable (d->path);
          return gr_make_error (err, errno, "set times of `%s`", p);
        }
    }
  return 0;
}

static void
restore_locale (locale_t *l)
{
  if (*l == (locale_t) 0)
    return;
  locale_t c = uselocale (*l);
  if (c != (locale_t) 0 && c != LC_GLOBAL_LOCALE)
    freelocale (c);
}

int
gr_archive_apply (int layer_dirfd, int tar_fd, const struct gr_apply_opts *opts, gr_error_t *err)
{
  /* libarchive converts PAX (UTF-8) names to the thread's locale: in a
     UTF-8 locale it would NFC-normalise them and replace invalid bytes.
     In the C locale the conversion of non-ASCII names fails and libarchive
     keeps the raw bytes, which is what Go's archive/tar (dockerd) does.  */
  __attribute__ ((cleanup (restore_locale))) locale_t saved_locale = (locale_t) 0;
  locale_t cloc = newlocale (LC_ALL_MASK, "C", (locale_t) 0);
  if (cloc == (locale_t) 0)
    return gr_make_error (err, errno, "newlocale C");
  saved_locale = uselocale (cloc);
  if (saved_locale == (locale_t) 0)
    {
      int saved = errno;
      freelocale (cloc);
      return gr_make_error (err, saved, "uselocale C");
    }

  struct apply ap = { .root = -1,
                      .wf = opts ? opts->whiteouts : GR_WHITEOUT_OVERLAY,
                      .implicit_dir_mode = opts ? opts->implicit_dir_mode & 07777 : 0,
                      .cache_fd = -1 };
  cleanup_close int root = openat (layer_dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root < 0)
    return gr_make_error (err, errno, "open layer directory");
  ap.root = root;

  cleanup_free char *buf = xmalloc (READ_BUF_SIZE);
  struct reader rd = { .fd = tar_fd, .buf = buf };
  struct archive *a = archive_read_new ();
  if (a == NULL)
    return gr_make_error (err, ENOMEM, "archive_read_new");
  ap.a = a;
  archive_read_support_format_tar (a);
  archive_read_support_format_empty (a);

  int ret = 0;
  if (archive_read_open (a, &rd, NULL, read_cb, NULL) != ARCHIVE_OK)
    ret = gr_make_error (err, archive_errno (a) > 0 ? archive_errno (a) : EINVAL, "layer tar: %s",
                         archive_error_string (a));
  while (ret == 0)
    {
      struct archive_entry *e;
      int r = archive_read_next_header (a, &e);
      if (r == ARCHIVE_EOF)
        break;
      /* ARCHIVE_WARN: e.g. a name not convertible to the C locale, kept
         raw; but a chain of extension headers cut short is damage.  */
      if (r == ARCHIVE_WARN && archive_error_string (a)
          && strstr (archive_error_string (a), "Too many special headers"))
        r = ARCHIVE_FATAL;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        {
          ret = gr_make_error (err, archive_errno (a) > 0 ? archive_errno (a) : EINVAL, "layer tar: %s",
                               archive_error_string (a) ? archive_error_string (a) : "read error");
          break;
        }
      if (apply_entry (&ap, e, err) < 0)
        {
          const char *name = archive_entry_pathname (e);
          cleanup_free char *p = printable (name ? name : "");
          int st = gr_error_status (err);
          cleanup_free char *m = xstrdup (gr_error_msg (err));
          if (st > 0 && strstr (m, "layer tar:") == NULL)
            ret = gr_make_error (err, st, "layer tar entry `%s`: %s: %s", p, m, strerror (st));
          else
            ret = gr_make_error (err, st, "layer tar entry `%s`: %s", p, m);
        }
    }
  /* Before the root's times are set.  */
  {
    gr_error_t e2 = NULL;
    if (gr_rm_rf_at (root, PLNK_STASH, &e2) < 0 && ret == 0)
      {
        ret = -1;
        if (err)
          *err = gr_steal (e2);
      }
    gr_error_release (&e2);
  }
  if (ret == 0)
    ret = finish_dirs (&ap, err);
  archive_read_free (a);
  if (ret == 0)
    ret = drain (tar_fd, buf, err);

  for (size_t i = 0; i < ap.ndirs; i++)
    free (ap.dirs[i].path);
  free (ap.dirs);
  strset_free (&ap.unpacked);
  if (ap.cache_fd >= 0)
    close (ap.cache_fd);
  free (ap.cache_path);
  return ret < 0 ? ret : 0;
}

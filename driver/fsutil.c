#include "config.h"

#include "fsutil.h"

#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <string.h>
#include <sys/syscall.h>

int
gr_fsync_dir (int dirfd, gr_error_t *err)
{
  if (fsync (dirfd) < 0 && errno != EINVAL)
    return gr_make_error (err, errno, "fsync directory");
  return 0;
}

int
gr_write_file_atomic (int dirfd, const char *name, const void *data, size_t len, mode_t mode,
                      gr_error_t *err)
{
  /* NAME may have directories: the temp file goes beside it.  */
  const char *slash = strrchr (name, '/');
  cleanup_close int parent = -1;
  if (slash)
    {
      cleanup_free char *dir = xstrndup (name, (size_t) (slash - name));
      parent = gr_open_dir_at (dirfd, dir, err);
      if (parent < 0)
        return -1;
      dirfd = parent;
      name = slash + 1;
    }
  cleanup_free char *tmp
      = xasprintf (".%s.tmp-%ld-%lx", name, (long) getpid (), (unsigned long) random ());
  cleanup_close int fd = openat (dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0)
    return gr_make_error (err, errno, "create `%s`", tmp);
  if (gr_write_all (fd, data, len, err) < 0 || fchmod (fd, mode) < 0 || fsync (fd) < 0)
    {
      if (err && *err == NULL)
        gr_make_error (err, errno, "write `%s`", tmp);
      unlinkat (dirfd, tmp, 0);
      return gr_error_wrap (err, "write `%s`", name);
    }
  if (renameat (dirfd, tmp, dirfd, name) < 0)
    {
      int saved = errno;
      unlinkat (dirfd, tmp, 0);
      return gr_make_error (err, saved, "rename `%s` to `%s`", tmp, name);
    }
  return gr_fsync_dir (dirfd, err);
}

int
gr_read_file_at (char **out, size_t *len, int dirfd, const char *name, size_t max, gr_error_t *err)
{
  cleanup_close int fd = openat (dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  cleanup_buf struct gr_buf b = { 0 };
  if (max == 0)
    max = 64 << 20;
  if (fd < 0)
    return gr_make_error (err, errno, "open `%s`", name);
  for (;;)
    {
      gr_buf_reserve (&b, 8192);
      ssize_t r = read (fd, b.data + b.len, 8192);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return gr_make_error (err, errno, "read `%s`", name);
      if (r == 0)
        break;
      b.len += (size_t) r;
      if (b.len > max)
        return gr_make_error (err, EFBIG, "`%s` is larger than %zu bytes", name, max);
    }
  gr_buf_append (&b, "", 0);
  if (len)
    *len = b.len;
  *out = gr_buf_steal (&b);
  return 0;
}

int
gr_mkdir_p_at (int dirfd, const char *path, mode_t mode, gr_error_t *err)
{
  cleanup_free char *p = xstrdup (path);
  size_t n = strlen (p);
  for (size_t i = 1; i <= n; i++)
    {
      if (p[i] != '/' && p[i] != '\0')
        continue;
      bool last = p[i] == '\0' || p[i + 1] == '\0';
      char saved = p[i];
      p[i] = '\0';
      if (mkdirat (dirfd, p, last ? mode : 0755) < 0 && errno != EEXIST)
        return gr_make_error (err, errno, "mkdir `%s`", p);
      p[i] = saved;
      if (last)
        break;
    }
  return 0;
}

DIR *
gr_dir_open_fd (int dirfd, gr_error_t *err)
{
  int fd = fcntl (dirfd, F_DUPFD_CLOEXEC, 0);
  if (fd < 0)
    {
      gr_make_error (err, errno, "dup");
      return NULL;
    }
  DIR *d = fdopendir (fd);
  if (d == NULL)
    {
      gr_make_error (err, errno, "fdopendir");
      close (fd);
      return NULL;
    }
  /* the duplicate shares the file offset: start from the top */
  rewinddir (d);
  return d;
}

DIR *
gr_dir_open_at (int dirfd, const char *path, gr_error_t *err)
{
  int fd = gr_open_dir_at (dirfd, path, err);
  if (fd < 0)
    return NULL;
  DIR *d = fdopendir (fd);
  if (d == NULL)
    {
      gr_make_error (err, errno, "open directory `%s`", path);
      close (fd);
    }
  return d;
}

static int
empty_dir (int dfd, dev_t dev, gr_error_t *err)
{
  cleanup_dir DIR *d = gr_dir_open_fd (dfd, err);
  if (d == NULL)
    return -1;
  for (;;)
    {
      errno = 0;
      struct dirent *de = readdir (d);
      if (de == NULL)
        {
          if (errno)
            return gr_make_error (err, errno, "readdir");
          break;
        }
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      if (unlinkat (dfd, de->d_name, 0) == 0 || errno == ENOENT)
        continue;
      if (errno != EISDIR && errno != EPERM)
        return gr_make_error (err, errno, "unlink `%s`", de->d_name);
      struct stat st;
      if (fstatat (dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return gr_make_error (err, errno, "stat `%s`", de->d_name);
      if (! S_ISDIR (st.st_mode))
        return gr_make_error (err, EPERM, "unlink `%s`", de->d_name);
      if (st.st_dev != dev)
        return gr_make_error (err, EBUSY, "`%s` is a mount point", de->d_name);
      cleanup_close int child = openat (dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0)
        {
          /* A mode 000 directory: make it searchable first.  */
          if (fchmodat (dfd, de->d_name, 0700, 0) < 0)
            return gr_make_error (err, errno, "chmod `%s`", de->d_name);
          child = openat (dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (child < 0)
            return gr_make_error (err, errno, "open `%s`", de->d_name);
        }
      if (empty_dir (child, dev, err) < 0)
        return gr_error_wrap (err, "%s", de->d_name);
      if (unlinkat (dfd, de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return gr_make_error (err, errno, "rmdir `%s`", de->d_name);
    }
  return 0;
}

int
gr_empty_dir_at (int dirfd, gr_error_t *err)
{
  struct stat st;
  if (fstat (dirfd, &st) < 0)
    return gr_make_error (err, errno, "stat");
  return empty_dir (dirfd, st.st_dev, err);
}

int
gr_rm_rf_at (int dirfd, const char *name, gr_error_t *err)
{
  struct stat st;
  if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT ? 0 : gr_make_error (err, errno, "stat `%s`", name);
  if (! S_ISDIR (st.st_mode))
    {
      if (unlinkat (dirfd, name, 0) < 0 && errno != ENOENT)
        return gr_make_error (err, errno, "unlink `%s`", name);
      return 0;
    }
  cleanup_close int fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0 && errno == EACCES && fchmodat (dirfd, name, 0700, 0) == 0)
    fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return gr_make_error (err, errno, "open `%s`", name);
  if (empty_dir (fd, st.st_dev, err) < 0)
    return gr_error_wrap (err, "remove `%s`", name);
  if (unlinkat (dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
    return gr_make_error (err, errno, "rmdir `%s`", name);
  return 0;
}

int
gr_open_dir_at (int dirfd, const char *path, gr_error_t *err)
{
  struct open_how how = { .flags = O_RDONLY | O_DIRECTORY | O_CLOEXEC,
                          .resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS };
  int fd = (int) syscall (SYS_openat2, dirfd, path, &how, sizeof (how));
  if (fd < 0 && errno == ENOSYS)
    fd = openat (dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return gr_make_error (err, errno, "open directory `%s`", path);
  return fd;
}

int
gr_open_in_root (int rootfd, const char *path, int flags, mode_t mode, gr_error_t *err)
{
  struct open_how how = { .flags = (uint64_t) (flags | O_CLOEXEC),
                          .mode = (flags & (O_CREAT | O_TMPFILE)) ? mode : 0,
                          .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
  for (;;)
    {
      int fd = (int) syscall (SYS_openat2, rootfd, path, &how, sizeof (how));
      if (fd >= 0)
        return fd;
      if (errno == EAGAIN || errno == EINTR)
        continue;
      return gr_make_error (err, errno, "open `%s`", path);
    }
}

struct size_ino
{
  dev_t dev;
  ino_t ino;
};

static int
dir_size (int dfd, int64_t *total, struct size_ino **seen, size_t *nseen, gr_error_t *err)
{
  cleanup_dir DIR *d = gr_dir_open_fd (dfd, err);
  if (d == NULL)
    return -1;
  for (;;)
    {
      errno = 0;
      struct dirent *de = readdir (d);
      if (de == NULL)
        {
          if (errno)
            return gr_make_error (err, errno, "readdir");
          return 0;
        }
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      struct stat st;
      if (fstatat (dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        {
          if (errno == ENOENT)
            continue;
          return gr_make_error (err, errno, "stat `%s`", de->d_name);
        }
      if (S_ISDIR (st.st_mode))
        {
          cleanup_close int child = openat (dfd, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (child < 0)
            {
              if (errno == EACCES)
                continue;
              return gr_make_error (err, errno, "open `%s`", de->d_name);
            }
          if (dir_size (child, total, seen, nseen, err) < 0)
            return -1;
          continue;
        }
      if (st.st_nlink > 1)
        {
          bool dup_link = false;
          for (size_t i = 0; i < *nseen; i++)
            if ((*seen)[i].ino == st.st_ino && (*seen)[i].dev == st.st_dev)
              {
                dup_link = true;
                break;
              }
          if (dup_link)
            continue;
          *seen = xrealloc (*seen, (*nseen + 1) * sizeof (**seen));
          (*seen)[(*nseen)++] = (struct size_ino){ st.st_dev, st.st_ino };
        }
      *total += st.st_size;
    }
}

int
gr_dir_size_at (int dirfd, int64_t *out, gr_error_t *err)
{
  cleanup_free struct size_ino *seen = NULL;
  size_t nseen = 0;
  int64_t total = 0;
  if (dir_size (dirfd, &total, &seen, &nseen, err) < 0)
    return -1;
  *out = total;
  return 0;
}

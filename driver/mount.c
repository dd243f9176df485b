#include "config.h"

#include "mount.h"

#include <fcntl.h>
#include <libmount.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

bool
gr_mount_fs_supported (const char *fstype)
{
  cleanup_file FILE *f = fopen ("/proc/filesystems", "re");
  char line[256];
  if (f == NULL)
    return false;
  while (fgets (line, sizeof (line), f))
    {
      char *name = strchr (line, '\t');
      name = name ? name + 1 : line;
      name[strcspn (name, "\n")] = '\0';
      if (strcmp (name, fstype) == 0)
        return true;
    }
  return false;
}

struct fd_list
{
  int *fds;
  size_t n;
};

static void
fd_list_close (struct fd_list *l)
{
  for (size_t i = 0; i < l->n; i++)
    if (l->fds[i] >= 0)
      close (l->fds[i]);
  free (l->fds);
}

static int
fd_list_open (struct fd_list *l, const char *path, gr_error_t *err)
{
  int fd = open (path, O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return gr_make_error (err, errno, "open `%s`", path);
  l->fds = xrealloc (l->fds, (l->n + 1) * sizeof (int));
  l->fds[l->n++] = fd;
  return fd;
}

static void
append_label (struct gr_buf *opts, const char *mount_label)
{
  if (mount_label && mount_label[0])
    gr_buf_printf (opts, ",context=\"%s\"", mount_label);
}

int
gr_mount_overlay (const char *target, const char *upper, const char *work,
                  const char *const *lowers, size_t n_lowers, const char *mount_label,
                  gr_error_t *err)
{
  struct fd_list fds __attribute__ ((cleanup (fd_list_close))) = { 0 };
  cleanup_buf struct gr_buf opts = { 0 };

  if (n_lowers == 0 || (upper == NULL && n_lowers < 2))
    return gr_make_error (err, EINVAL, "overlay mount of `%s` needs at least %s lower layer%s", target,
                          upper ? "one" : "two", upper ? "" : "s");
  gr_buf_puts (&opts, "lowerdir=");
  for (size_t i = 0; i < n_lowers; i++)
    {
      int fd = fd_list_open (&fds, lowers[i], err);
      if (fd < 0)
        return -1;
      gr_buf_printf (&opts, "%s/proc/self/fd/%d", i ? ":" : "", fd);
    }
  if (upper)
    {
      int ufd = fd_list_open (&fds, upper, err);
      if (ufd < 0)
        return -1;
      int wfd = fd_list_open (&fds, work, err);
      if (wfd < 0)
        return -1;
      gr_buf_printf (&opts, ",upperdir=/proc/self/fd/%d,workdir=/proc/self/fd/%d,index=off", ufd, wfd);
    }
  unsigned long flags = upper ? 0 : MS_RDONLY;
  append_label (&opts, mount_label);
  size_t base_len = opts.len;
  /* Renamed dirs and copied-up metadata must land in the upper dir as
     plain files, or the layer's diff would not be a faithful tar.  Older
     kernels lack these options (and have them off).  */
  gr_buf_puts (&opts, ",redirect_dir=off,metacopy=off");
  if ((size_t) opts.len >= (size_t) sysconf (_SC_PAGESIZE))
    return gr_make_error (err, E2BIG, "overlay options for `%s` exceed the page size (%zu layers)",
                          target, n_lowers);
  if (mount ("overlay", target, "overlay", flags, opts.data) == 0)
    return 0;
  if (errno == EINVAL)
    {
      opts.data[base_len] = '\0';
      if (mount ("overlay", target, "overlay", flags, opts.data) == 0)
        return 0;
    }
  return gr_make_error (err, errno, "mount overlay on `%s` (%zu lower layers)", target, n_lowers);
}

int
gr_mount_aufs (const char *target, const char *rw, const char *const *ro, size_t n_ro,
               const char *mount_label, gr_error_t *err)
{
  long page = sysconf (_SC_PAGESIZE);
  cleanup_buf struct gr_buf opts = { 0 };
  size_t i = 0;

  gr_buf_printf (&opts, "br:%s=rw", rw);
  for (; i < n_ro; i++)
    {
      size_t add = strlen (ro[i]) + 8;
      if (opts.len + add + 64 >= (size_t) page)
        break;
      gr_buf_printf (&opts, ":%s=ro+wh", ro[i]);
    }
  gr_buf_puts (&opts, ",dio,xino=/dev/shm/aufs.xino");
  append_label (&opts, mount_label);
  if (mount ("none", target, "aufs", 0, opts.data) < 0)
    return gr_make_error (err, errno, "mount aufs on `%s`", target);
  for (; i < n_ro; i++)
    {
      cleanup_free char *more = xasprintf ("append:%s=ro+wh", ro[i]);
      if (mount ("none", target, "aufs", MS_REMOUNT, more) < 0)
        {
          int saved = errno;
          umount2 (target, MNT_DETACH);
          return gr_make_error (err, saved, "append aufs branch `%s` on `%s`", ro[i], target);
        }
    }
  return 0;
}

int
gr_unmount (const char *target, gr_error_t *err)
{
  if (umount2 (target, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    return gr_make_error (err, errno, "unmount `%s`", target);
  return 0;
}

static struct libmnt_table *
load_mountinfo (gr_error_t *err)
{
  struct libmnt_table *tb = mnt_new_table_from_file ("/proc/self/mountinfo");
  if (tb == NULL)
    gr_make_error (err, errno ? errno : EIO, "parse /proc/self/mountinfo");
  return tb;
}

bool
gr_mount_is_mountpoint (const char *path)
{
  struct libmnt_table *tb = load_mountinfo (NULL);
  if (tb == NULL)
    return false;
  bool found = mnt_table_find_target (tb, path, MNT_ITER_BACKWARD) != NULL;
  mnt_unref_table (tb);
  return found;
}

int
gr_unmount_below (const char *dir, gr_error_t *err)
{
  struct libmnt_table *tb = load_mountinfo (err);
  struct libmnt_iter *it = NULL;
  struct libmnt_fs *fs = NULL;
  size_t dlen = strlen (dir);
  int n = 0, ret = 0;

  if (tb == NULL)
    return -1;
  it = mnt_new_iter (MNT_ITER_BACKWARD);
  while (mnt_table_next_fs (tb, it, &fs) == 0)
    {
      const char *t = mnt_fs_get_target (fs);
      if (t == NULL || strncmp (t, dir, dlen) != 0 || t[dlen] != '/')
        continue;
      if (umount2 (t, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
        {
          ret = gr_make_error (err, errno, "unmount `%s`", t);
          break;
        }
      n++;
    }
  mnt_free_iter (it);
  mnt_unref_table (tb);
  return ret < 0 ? ret : n;
}

/* Whiteouts in both encodings.  The tar/aufs form is a name (`.wh.<name>`,
   `.wh..wh..opq`); the overlayfs form is an inode (char device 0/0) or an
   xattr on a directory (`trusted.overlay.opaque=y`).  */
#include "config.h"

#include "whiteout.h"
#include "fsutil.h"

#include <fcntl.h>
#include <string.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

/* Mode of the whiteout files aufs itself creates (r--r--r--).  */
#define AUFS_WH_MODE 0444

static const struct
{
  const char *name;
  enum gr_whiteout_format f;
} formats[] = {
  { "aufs", GR_WHITEOUT_AUFS },       { "overlay", GR_WHITEOUT_OVERLAY },
  { "overlay2", GR_WHITEOUT_OVERLAY }, { "overlayfs", GR_WHITEOUT_OVERLAY },
  { "delete", GR_WHITEOUT_DELETE },   { "vfs", GR_WHITEOUT_DELETE },
};

const char *
gr_whiteout_format_name (enum gr_whiteout_format f)
{
  switch (f)
    {
    case GR_WHITEOUT_AUFS:
      return "aufs";
    case GR_WHITEOUT_OVERLAY:
      return "overlay";
    case GR_WHITEOUT_DELETE:
      return "delete";
    }
  return "unknown";
}

int
gr_whiteout_format_parse (const char *name, enum gr_whiteout_format *out, gr_error_t *err)
{
  for (size_t i = 0; i < sizeof (formats) / sizeof (formats[0]); i++)
    if (strcmp (name, formats[i].name) == 0)
      {
        *out = formats[i].f;
        return 0;
      }
  return gr_make_error (err, EINVAL, "unknown whiteout format `%s`", name);
}

int
gr_whiteout_classify_name (const char *name, enum gr_whiteout_kind *kind, const char **target,
                           gr_error_t *err)
{
  if (target)
    *target = NULL;
  if (strncmp (name, GR_WH_PREFIX, strlen (GR_WH_PREFIX)) != 0)
    {
      *kind = GR_WH_NONE;
      return 0;
    }
  if (strcmp (name, GR_WH_OPAQUE) == 0)
    {
      *kind = GR_WH_OPAQUE_DIR;
      return 0;
    }
  if (strncmp (name, GR_WH_META_PREFIX, strlen (GR_WH_META_PREFIX)) == 0)
    {
      *kind = GR_WH_INTERNAL;
      return 0;
    }
  const char *t = name + strlen (GR_WH_PREFIX);
  if (*t == '\0' || strcmp (t, ".") == 0 || strcmp (t, "..") == 0 || strchr (t, '/') != NULL)
    return gr_make_error (err, EINVAL, "invalid whiteout `%s`", name);
  *kind = GR_WH_FILE;
  if (target)
    *target = t;
  return 0;
}

bool
gr_whiteout_is_overlay_file (const struct stat *st)
{
  return S_ISCHR (st->st_mode) && st->st_rdev == makedev (0, 0);
}

/* The opaque xattr of the directory FD (which may be an O_PATH fd).  */
static ssize_t
get_opaque_xattr (int fd, char *buf, size_t len)
{
  ssize_t r = fgetxattr (fd, GR_OVL_OPAQUE_XATTR, buf, len);
  if (r < 0 && errno == EBADF)
    {
      cleanup_free char *proc = xasprintf ("/proc/self/fd/%d", fd);
      r = getxattr (proc, GR_OVL_OPAQUE_XATTR, buf, len);
    }
  return r;
}

bool
gr_whiteout_is_overlay_opaque (int dirfd, const char *name)
{
  cleanup_close int fd = -1;
  if (name && *name)
    {
      fd = openat (dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (fd < 0)
        return false;
      dirfd = fd;
    }
  char v[4];
  ssize_t r = get_opaque_xattr (dirfd, v, sizeof (v));
  return r == 1 && v[0] == 'y';
}

static int
check_basename (const char *name, gr_error_t *err)
{
  if (*name == '\0' || strcmp (name, ".") == 0 || strcmp (name, "..") == 0 || strchr (name, '/'))
    return gr_make_error (err, EINVAL, "invalid whiteout target `%s`", name);
  return 0;
}

/* An empty regular file DIRFD/NAME (mode 0444); an existing regular file
   of that name is accepted as is.  */
static int
create_marker_file (int dirfd, const char *name, gr_error_t *err)
{
  cleanup_close int fd
      = openat (dirfd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, AUFS_WH_MODE);
  if (fd >= 0)
    {
      if (fchmod (fd, AUFS_WH_MODE) < 0)
        return gr_make_error (err, errno, "chmod `%s`", name);
      return 0;
    }
  if (errno == EEXIST)
    {
      struct stat st;
      if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG (st.st_mode))
        return 0;
      errno = EEXIST;
    }
  return gr_make_error (err, errno, "create whiteout `%s`", name);
}

int
gr_whiteout_create (int dirfd, const char *name, enum gr_whiteout_format f, gr_error_t *err)
{
  if (check_basename (name, err) < 0)
    return -1;
  switch (f)
    {
    case GR_WHITEOUT_AUFS:
      {
        cleanup_free char *wh = xasprintf (GR_WH_PREFIX "%s", name);
        return create_marker_file (dirfd, wh, err);
      }
    case GR_WHITEOUT_OVERLAY:
      if (mknodat (dirfd, name, S_IFCHR | 0, makedev (0, 0)) == 0)
        return 0;
      if (errno == EEXIST)
        {
          struct stat st;
          if (fstatat (dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && gr_whiteout_is_overlay_file (&st))
            return 0;
          errno = EEXIST;
        }
      return gr_make_error (err, errno, "create whiteout `%s`", name);
    case GR_WHITEOUT_DELETE:
      return gr_rm_rf_at (dirfd, name, err);
    }
  return gr_make_error (err, EINVAL, "unknown whiteout format %d", (int) f);
}

int
gr_whiteout_make_opaque (int dirfd, enum gr_whiteout_format f, gr_error_t *err)
{
  switch (f)
    {
    case GR_WHITEOUT_AUFS:
      return create_marker_file (dirfd, GR_WH_OPAQUE, err);
    case GR_WHITEOUT_OVERLAY:
      {
        int r = fsetxattr (dirfd, GR_OVL_OPAQUE_XATTR, "y", 1, 0);
        if (r < 0 && errno == EBADF)
          {
            cleanup_free char *proc = xasprintf ("/proc/self/fd/%d", dirfd);
            r = setxattr (proc, GR_OVL_OPAQUE_XATTR, "y", 1, 0);
          }
        if (r < 0)
          return gr_make_error (err, errno, "set %s", GR_OVL_OPAQUE_XATTR);
        return 0;
      }
    case GR_WHITEOUT_DELETE:
      return gr_empty_dir_at (dirfd, err);
    }
  return gr_make_error (err, EINVAL, "unknown whiteout format %d", (int) f);
}

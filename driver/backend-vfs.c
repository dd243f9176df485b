#include "config.h"

/* The vfs layout of stock dockerd (moby daemon/graphdriver/vfs):
   vfs/dir/<id>/ holds the layer's whole tree, a copy of its parent's
   (contents, hard links, devices, owners, modes, times, the
   security.capability and trusted.overlay.opaque xattrs) with the layer
   applied on top, deletions carried out.  */

#include "driver.h"

#include "archive.h"
#include "fsutil.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

static int
vfs_init (struct gr_driver *d, const struct gr_driver_opts *opts, gr_error_t *err)
{
  if (opts && opts->n_opts > 0)
    return gr_make_error (err, EINVAL, "vfs: storage options are not supported here");
  if (fchmod (d->home_fd, 0710) < 0)
    return gr_make_error (err, errno, "chmod `%s`", d->home);
  if (mkdirat (d->home_fd, "dir", 0710) < 0 && errno != EEXIST)
    return gr_make_error (err, errno, "mkdir `%s/dir`", d->home);
  return 0;
}

static void
vfs_release (struct gr_driver *d)
{
  d->priv = NULL;
}

static int
open_layer (struct gr_driver *d, const char *id, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0)
    return -1;
  cleanup_free char *rel = xasprintf ("dir/%s", id);
  return gr_open_dir_at (d->home_fd, rel, err);
}

/* ---------- copying a tree as moby's copy.DirCopy(Content) ---------- */

struct inode_map
{
  dev_t dev;
  ino_t ino;
  int dirfd;  /* not owned */
  char *path; /* relative to the copy root */
};

struct copy_ctx
{
  int dst_root;
  struct inode_map *links;
  size_t n_links;
};

static int
copy_xattr (int src_fd, const char *src_name, int dst_fd, const char *dst_name, const char *key,
            gr_error_t *err)
{
  cleanup_free char *sp = xasprintf ("/proc/self/fd/%d/%s", src_fd, src_name);
  cleanup_free char *dp = xasprintf ("/proc/self/fd/%d/%s", dst_fd, dst_name);
  char buf[65536];
  ssize_t n = lgetxattr (sp, key, buf, sizeof (buf));
  if (n < 0)
    {
      if (errno == ENODATA || errno == ENOTSUP)
        return 0;
      return gr_make_error (err, errno, "getxattr %s `%s`", key, src_name);
    }
  if (lsetxattr (dp, key, buf, (size_t)n, 0) < 0)
    return gr_make_error (err, errno, "setxattr %s `%s`", key, dst_name);
  return 0;
}

static int
copy_regular (int src_dir, const char *name, int dst_dir, const struct stat *st, gr_error_t *err)
{
  cleanup_close int in = openat (src_dir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (in < 0)
    return gr_make_error (err, errno, "open `%s`", name);
  cleanup_close int out = openat (dst_dir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (out < 0)
    return gr_make_error (err, errno, "create `%s`", name);
  off_t left = st->st_size;
  while (left > 0)
    {
      ssize_t n = copy_file_range (in, NULL, out, NULL, (size_t)left, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP))
        {
          /* plain read/write */
          char buf[65536];
          ssize_t r = read (in, buf, sizeof (buf));
          if (r < 0 && errno == EINTR)
            continue;
          if (r < 0)
            return gr_make_error (err, errno, "read `%s`", name);
          if (r == 0)
            break;
          if (gr_write_all (out, buf, (size_t)r, err) < 0)
            return -1;
          left -= r;
          continue;
        }
      if (n < 0)
        return gr_make_error (err, errno, "copy `%s`", name);
      if (n == 0)
        break;
      left -= n;
    }
  return 0;
}

/* Ownership, xattrs, mode and times of DST_DIR/NAME from ST.  */
static int
copy_meta (int src_dir, int dst_dir, const char *name, const struct stat *st, gr_error_t *err)
{
  if (fchownat (dst_dir, name, st->st_uid, st->st_gid, AT_SYMLINK_NOFOLLOW) < 0)
    return gr_make_error (err, errno, "chown `%s`", name);
  if (copy_xattr (src_dir, name, dst_dir, name, "security.capability", err) < 0
      || copy_xattr (src_dir, name, dst_dir, name, "trusted.overlay.opaque", err) < 0)
    return -1;
  if (!S_ISLNK (st->st_mode) && fchmodat (dst_dir, name, st->st_mode & 07777, 0) < 0)
    return gr_make_error (err, errno, "chmod `%s`", name);
  if (!S_ISDIR (st->st_mode))
    {
      struct timespec ts[2] = { st->st_atim, st->st_mtim };
      if (utimensat (dst_dir, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return gr_make_error (err, errno, "utimes `%s`", name);
    }
  return 0;
}

static int
copy_tree (struct copy_ctx *c, int src, int dst, const char *rel, gr_error_t *err)
{
  cleanup_dir DIR *d = gr_dir_open_fd (src, err);
  if (d == NULL)
    return -1;
  for (;;)
    {
      errno = 0;
      struct dirent *de = readdir (d);
      if (de == NULL)
        {
          if (errno)
            return gr_make_error (err, errno, "readdir `%s`", rel);
          break;
        }
      const char *name = de->d_name;
      if (strcmp (name, ".") == 0 || strcmp (name, "..") == 0)
        continue;
      cleanup_free char *path = rel[0] ? xasprintf ("%s/%s", rel, name) : xstrdup (name);
      struct stat st;
      if (fstatat (src, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return gr_make_error (err, errno, "stat `%s`", path);
      switch (st.st_mode & S_IFMT)
        {
        case S_IFREG:
          {
            const char *first = NULL;
            if (st.st_nlink > 1)
              for (size_t i = 0; i < c->n_links; i++)
                if (c->links[i].ino == st.st_ino && c->links[i].dev == st.st_dev)
                  first = c->links[i].path;
            if (first)
              {
                if (linkat (c->dst_root, first, dst, name, 0) < 0)
                  return gr_make_error (err, errno, "link `%s` to `%s`", path, first);
                continue; /* the inode's metadata is already there */
              }
            if (copy_regular (src, name, dst, &st, err) < 0)
              return gr_error_wrap (err, "%s", path);
            if (st.st_nlink > 1)
              {
                c->links = xrealloc (c->links, (c->n_links + 1) * sizeof (*c->links));
                c->links[c->n_links++] = (struct inode_map){ st.st_dev, st.st_ino, -1, xstrdup (path) };
              }
            break;
          }
        case S_IFDIR:
          {
            if (mkdirat (dst, name, 0700) < 0 && errno != EEXIST)
              return gr_make_error (err, errno, "mkdir `%s`", path);
            cleanup_close int s2 = openat (src, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            cleanup_close int d2 = openat (dst, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s2 < 0 || d2 < 0)
              return gr_make_error (err, errno, "open `%s`", path);
            if (copy_tree (c, s2, d2, path, err) < 0)
              return -1;
            break;
          }
        case S_IFLNK:
          {
            char target[PATH_MAX + 1];
            ssize_t n = readlinkat (src, name, target, sizeof (target) - 1);
            if (n < 0)
              return gr_make_error (err, errno, "readlink `%s`", path);
            target[n] = '\0';
            if (symlinkat (target, dst, name) < 0)
              return gr_make_error (err, errno, "symlink `%s`", path);
            break;
          }
        case S_IFIFO:
        case S_IFSOCK: /* as moby: a socket becomes a fifo */
          if (mknodat (dst, name, S_IFIFO | (st.st_mode & 07777), 0) < 0)
            return gr_make_error (err, errno, "mkfifo `%s`", path);
          break;
        case S_IFCHR:
        case S_IFBLK:
          if (mknodat (dst, name, st.st_mode, st.st_rdev) < 0)
            return gr_make_error (err, errno, "mknod `%s`", path);
          break;
        default:
          return gr_make_error (err, EINVAL, "`%s`: unknown file type", path);
        }
      if (copy_meta (src, dst, name, &st, err) < 0)
        return gr_error_wrap (err, "%s", path);
    }
  /* Directory times last, once nothing more is written into it.  */
  struct stat st;
  if (fstat (src, &st) < 0)
    return gr_make_error (err, errno, "stat `%s`", rel);
  struct timespec ts[2] = { st.st_atim, st.st_mtim };
  if (futimens (dst, ts) < 0)
    return gr_make_error (err, errno, "utimes `%s`", rel);
  return 0;
}

/* Copy the tree SRC into the (empty) directory DST, root metadata too.  */
static int
copy_dir (int src, int dst, gr_error_t *err)
{
  struct copy_ctx c = { .dst_root = dst };
  int r = copy_tree (&c, src, dst, "", err);
  for (size_t i = 0; i < c.n_links; i++)
    free (c.links[i].path);
  free (c.links);
  if (r < 0)
    return -1;
  struct stat st;
  if (fstat (src, &st) < 0)
    return gr_make_error (err, errno, "stat");
  if (fchown (dst, st.st_uid, st.st_gid) < 0 || fchmod (dst, st.st_mode & 07777) < 0)
    return gr_make_error (err, errno, "chown/chmod layer root");
  if (copy_xattr (src, ".", dst, ".", "security.capability", err) < 0
      || copy_xattr (src, ".", dst, ".", "trusted.overlay.opaque", err) < 0)
    return -1;
  struct timespec ts[2] = { st.st_atim, st.st_mtim };
  if (futimens (dst, ts) < 0)
    return gr_make_error (err, errno, "utimes layer root");
  return 0;
}

/* ---------- the backend ---------- */

static int
vfs_create (struct gr_driver *d, const char *id, const char *parent, bool rw, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0 || (parent && parent[0] && gr_id_validate (parent, err) < 0))
    return -1;
  cleanup_close int pfd = -1;
  if (parent && parent[0])
    {
      pfd = open_layer (d, parent, err);
      if (pfd < 0)
        return gr_error_wrap (err, "vfs parent layer %s", parent);
    }
  cleanup_free char *rel = xasprintf ("dir/%s", id);
  if (mkdirat (d->home_fd, rel, 0755) < 0)
    return gr_make_error (err, errno, "vfs layer %s: mkdir", id);
  cleanup_close int dfd = open_layer (d, id, err);
  if (dfd < 0 || fchmod (dfd, 0755) < 0 || (pfd >= 0 && copy_dir (pfd, dfd, err) < 0))
    {
      if (err && *err == NULL)
        gr_make_error (err, errno, "chmod");
      gr_error_t e = NULL;
      if (gr_rm_rf_at (d->home_fd, rel, &e) < 0)
        gr_error_release (&e);
      return gr_error_wrap (err, "vfs create %s", id);
    }
  (void)rw;
  return 0;
}

static int
vfs_remove (struct gr_driver *d, const char *id, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0)
    return -1;
  cleanup_free char *rel = xasprintf ("dir/%s", id);
  if (gr_rm_rf_at (d->home_fd, rel, err) < 0)
    return gr_error_wrap (err, "vfs remove %s", id);
  return 0;
}

static bool
vfs_exists (struct gr_driver *d, const char *id)
{
  struct stat st;
  if (gr_id_validate (id, NULL) < 0)
    return false;
  cleanup_free char *rel = xasprintf ("dir/%s", id);
  return fstatat (d->home_fd, rel, &st, 0) == 0;
}

static int
vfs_get (struct gr_driver *d, char **path, const char *id, gr_error_t *err)
{
  if (!vfs_exists (d, id))
    return gr_make_error (err, ENOENT, "vfs layer %s does not exist", id);
  *path = xasprintf ("%s/dir/%s", d->home, id);
  return 0;
}

static int
vfs_put (struct gr_driver *d, const char *id, gr_error_t *err)
{
  return 0;
}

static int
vfs_apply_diff (struct gr_driver *d, int64_t *size, const char *id, const char *parent, int tar_fd,
                gr_error_t *err)
{
  cleanup_close int dfd = open_layer (d, id, err);
  if (dfd < 0)
    return gr_error_wrap (err, "vfs apply %s", id);
  /* dockerd's naive-diff ApplyDiff: archive.UnpackLayer.  */
  struct gr_apply_opts opts = { .whiteouts = GR_WHITEOUT_DELETE, .implicit_dir_mode = 0600 };
  (void)parent;
  if (gr_archive_apply (dfd, tar_fd, &opts, err) < 0)
    return gr_error_wrap (err, "vfs apply %s", id);
  /* dockerd records the sum of the tar's size fields (the layer store
     gets that from the tar-split); the tree's size is the best we know
     here.  */
  if (gr_dir_size_at (dfd, size, err) < 0)
    return gr_error_wrap (err, "vfs apply %s: size", id);
  return 0;
}

static int
vfs_diff_size (struct gr_driver *d, int64_t *size, const char *id, const char *parent, gr_error_t *err)
{
  cleanup_close int dfd = open_layer (d, id, err);
  if (dfd < 0 || gr_dir_size_at (dfd, size, err) < 0)
    return gr_error_wrap (err, "vfs size %s", id);
  return 0;
}

static int
vfs_diff (struct gr_driver *d, int out_fd, const char *id, const char *parent, gr_error_t *err)
{
  return gr_make_error (err, ENOTSUP, "vfs diff %s: not implemented here", id);
}

static int
vfs_changes (struct gr_driver *d, json_t **out, const char *id, const char *parent, gr_error_t *err)
{
  return gr_make_error (err, ENOTSUP, "vfs changes %s: not implemented here", id);
}

static json_t *
vfs_status (struct gr_driver *d)
{
  return json_array ();
}

static int
vfs_metadata (struct gr_driver *d, json_t **out, const char *id, gr_error_t *err)
{
  *out = json_object ();
  return 0;
}

static int
vfs_cleanup (struct gr_driver *d, gr_error_t *err)
{
  return 0;
}

const struct gr_backend_ops gr_backend_vfs = {
  .name = "vfs",
  .init = vfs_init,
  .release = vfs_release,
  .create = vfs_create,
  .remove = vfs_remove,
  .get = vfs_get,
  .put = vfs_put,
  .exists = vfs_exists,
  .apply_diff = vfs_apply_diff,
  .diff = vfs_diff,
  .changes = vfs_changes,
  .diff_size = vfs_diff_size,
  .status = vfs_status,
  .metadata = vfs_metadata,
  .cleanup = vfs_cleanup,
};

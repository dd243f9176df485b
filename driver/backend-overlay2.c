#include "config.h"

/* The overlay2 layout of stock dockerd (moby daemon/graphdriver/overlay2),
   for writing pulled layers into a root dockerd then runs on:

     overlay2/<id>/diff/        the layer's files (overlayfs whiteouts)
     overlay2/<id>/link         26 chars [A-Z2-7], the short name below
     overlay2/<id>/lower        l/<L1>:l/<L2>:... nearest first (not for a base layer)
     overlay2/<id>/work/        (not for a base layer)
     overlay2/<id>/committed    written in a layer's dir once a child is created on it
     overlay2/l/<link>          -> ../<id>/diff

   Only what an image pull needs is implemented; mounting (get/put), diff
   and changes are left to dockerd.  */

#include "driver.h"

#include "archive.h"
#include "fsutil.h"
#include "graphroot-internal.h"

#include <fcntl.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statfs.h>

#define LINK_LEN 26
#define MAX_DEPTH 128

/* Does dockerd use overlay2's native diff here?  It does not when the
   kernel's overlayfs redirects directories on rename (doesSupportNativeDiff
   probes that with a test mount; the module parameter says the same for
   the default mount options).  With naive diff dockerd applies layers with
   archive.UnpackLayer through the merged mount.  */
bool
gr_overlay2_native_diff (void)
{
  char v[8] = "";
  int fd = open ("/sys/module/overlay/parameters/redirect_dir", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return true;
  ssize_t n = read (fd, v, sizeof (v) - 1);
  close (fd);
  return !(n > 0 && (v[0] == 'Y' || v[0] == 'y' || v[0] == '1'));
}

static int
ovl_init (struct gr_driver *d, const struct gr_driver_opts *opts, gr_error_t *err)
{
  if (opts && opts->n_opts > 0)
    return gr_make_error (err, EINVAL, "overlay2: storage options are not supported here");
  if (fchmod (d->home_fd, 0710) < 0)
    return gr_make_error (err, errno, "chmod `%s`", d->home);
  if (mkdirat (d->home_fd, "l", 0700) < 0 && errno != EEXIST)
    return gr_make_error (err, errno, "mkdir `%s/l`", d->home);
  return 0;
}

static void
ovl_release (struct gr_driver *d)
{
  d->priv = NULL;
}

/* A random short link name as moby's overlayutils.GenerateID: base32.  */
static int
gen_link (char out[LINK_LEN + 1], gr_error_t *err)
{
  static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  unsigned char rnd[LINK_LEN];
  size_t got = 0;
  while (got < sizeof (rnd))
    {
      ssize_t r = getrandom (rnd + got, sizeof (rnd) - got, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0)
        return gr_make_error (err, errno, "getrandom");
      got += (size_t)r;
    }
  for (int i = 0; i < LINK_LEN; i++)
    out[i] = alphabet[rnd[i] & 31];
  out[LINK_LEN] = '\0';
  return 0;
}

/* The `lower` value for a child of PARENT.  */
static int
lower_for_child (char **out, struct gr_driver *d, const char *parent, gr_error_t *err)
{
  cleanup_free char *link = NULL, *plower = NULL;
  cleanup_free char *link_path = xasprintf ("%s/link", parent);
  cleanup_free char *lower_path = xasprintf ("%s/lower", parent);
  if (gr_read_file_at (&link, NULL, d->home_fd, link_path, 4096, err) < 0)
    return gr_error_wrap (err, "overlay2 parent layer %s", parent);
  if (gr_read_file_at (&plower, NULL, d->home_fd, lower_path, 1 << 20, NULL) < 0)
    plower = NULL;
  size_t depth = 1;
  if (plower && plower[0])
    {
      depth++;
      for (const char *c = plower; *c; c++)
        depth += *c == ':';
    }
  if (depth > MAX_DEPTH)
    return gr_make_error (err, EINVAL, "overlay2 layer on %s: max depth exceeded", parent);
  *out = plower && plower[0] ? xasprintf ("l/%s:%s", link, plower) : xasprintf ("l/%s", link);
  return 0;
}

static int
ovl_create (struct gr_driver *d, const char *id, const char *parent, bool rw, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0 || (parent && parent[0] && gr_id_validate (parent, err) < 0))
    return -1;
  bool has_parent = parent && parent[0];
  cleanup_free char *lower = NULL;
  if (has_parent)
    {
      struct stat st;
      if (fstatat (d->home_fd, parent, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return gr_make_error (err, errno, "overlay2 parent layer %s", parent);
      if (lower_for_child (&lower, d, parent, err) < 0)
        return -1;
    }
  if (mkdirat (d->home_fd, id, 0710) < 0)
    return gr_make_error (err, errno, "overlay2 layer %s: mkdir", id);
  cleanup_close int dir = gr_open_dir_at (d->home_fd, id, err);
  char link[LINK_LEN + 1];
  cleanup_free char *target = xasprintf ("../%s/diff", id);
  cleanup_free char *link_rel = NULL;
  if (dir < 0)
    goto fail;
  if (fchmod (dir, 0710) < 0 || mkdirat (dir, "diff", 0755) < 0 || fchmodat (dir, "diff", 0755, 0) < 0)
    {
      gr_make_error (err, errno, "overlay2 layer %s: mkdir diff", id);
      goto fail;
    }
  for (int tries = 0;; tries++)
    {
      if (gen_link (link, err) < 0)
        goto fail;
      free (link_rel);
      link_rel = xasprintf ("l/%s", link);
      if (symlinkat (target, d->home_fd, link_rel) == 0)
        break;
      if (errno != EEXIST || tries > 5)
        {
          gr_make_error (err, errno, "overlay2 layer %s: symlink %s", id, link_rel);
          goto fail;
        }
    }
  if (gr_write_file_atomic (dir, "link", link, LINK_LEN, 0644, err) < 0)
    goto fail_link;
  if (has_parent)
    {
      cleanup_close int pdir = gr_open_dir_at (d->home_fd, parent, err);
      if (mkdirat (dir, "work", 0700) < 0)
        {
          gr_make_error (err, errno, "overlay2 layer %s: mkdir work", id);
          goto fail_link;
        }
      if (pdir < 0 || gr_write_file_atomic (pdir, "committed", "", 0, 0600, err) < 0
          || gr_write_file_atomic (dir, "lower", lower, strlen (lower), 0644, err) < 0)
        goto fail_link;
    }
  (void)rw;
  return 0;

fail_link:
  unlinkat (d->home_fd, link_rel, 0);
fail:
  {
    gr_error_t e = NULL;
    if (gr_rm_rf_at (d->home_fd, id, &e) < 0)
      gr_error_release (&e);
  }
  return gr_error_wrap (err, "overlay2 create %s", id);
}

static int
ovl_remove (struct gr_driver *d, const char *id, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0)
    return -1;
  cleanup_free char *link_path = xasprintf ("%s/link", id);
  cleanup_free char *link = NULL;
  if (gr_read_file_at (&link, NULL, d->home_fd, link_path, 4096, NULL) == 0 && link[0]
      && strchr (link, '/') == NULL && strcmp (link, "..") != 0 && strcmp (link, ".") != 0)
    {
      cleanup_free char *rel = xasprintf ("l/%s", link);
      if (unlinkat (d->home_fd, rel, 0) < 0 && errno != ENOENT)
        return gr_make_error (err, errno, "overlay2 remove %s: unlink %s", id, rel);
    }
  if (gr_rm_rf_at (d->home_fd, id, err) < 0)
    return gr_error_wrap (err, "overlay2 remove %s", id);
  return 0;
}

static bool
ovl_exists (struct gr_driver *d, const char *id)
{
  struct stat st;
  if (gr_id_validate (id, NULL) < 0)
    return false;
  return fstatat (d->home_fd, id, &st, 0) == 0;
}

static int
open_diff (struct gr_driver *d, const char *id, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0)
    return -1;
  cleanup_free char *rel = xasprintf ("%s/diff", id);
  return gr_open_dir_at (d->home_fd, rel, err);
}

static int
ovl_apply_diff (struct gr_driver *d, int64_t *size, const char *id, const char *parent, int tar_fd,
                gr_error_t *err)
{
  cleanup_close int diff = open_diff (d, id, err);
  if (diff < 0)
    return gr_error_wrap (err, "overlay2 apply %s", id);
  /* dockerd's native-diff ApplyDiff: archive.Unpack into the diff dir.  */
  struct gr_apply_opts opts = { .whiteouts = GR_WHITEOUT_OVERLAY, .implicit_dir_mode = 0755 };
  (void)parent;
  if (gr_archive_apply (diff, tar_fd, &opts, err) < 0)
    return gr_error_wrap (err, "overlay2 apply %s", id);
  /* dockerd records directory.Size of the diff dir.  */
  if (gr_dir_size_at (diff, size, err) < 0)
    return gr_error_wrap (err, "overlay2 apply %s: size", id);
  return 0;
}

static int
ovl_diff_size (struct gr_driver *d, int64_t *size, const char *id, const char *parent, gr_error_t *err)
{
  cleanup_close int diff = open_diff (d, id, err);
  (void)parent;
  if (diff < 0 || gr_dir_size_at (diff, size, err) < 0)
    return gr_error_wrap (err, "overlay2 size %s", id);
  return 0;
}

static int
ovl_get (struct gr_driver *d, char **path, const char *id, gr_error_t *err)
{
  return gr_make_error (err, ENOTSUP, "overlay2 get %s: mounting is left to dockerd", id);
}

static int
ovl_put (struct gr_driver *d, const char *id, gr_error_t *err)
{
  return gr_make_error (err, ENOTSUP, "overlay2 put %s: mounting is left to dockerd", id);
}

static int
ovl_diff (struct gr_driver *d, int out_fd, const char *id, const char *parent, gr_error_t *err)
{
  return gr_make_error (err, ENOTSUP, "overlay2 diff %s: not implemented here", id);
}

static int
ovl_changes (struct gr_driver *d, json_t **out, const char *id, const char *parent, gr_error_t *err)
{
  return gr_make_error (err, ENOTSUP, "overlay2 changes %s: not implemented here", id);
}

/* The name dockerd gives the backing file system (graphdriver.FsNames).  */
static const char *
backing_fs (int fd)
{
  struct statfs sfs;
  if (fstatfs (fd, &sfs) < 0)
    return "<unknown>";
  switch ((unsigned long)sfs.f_type)
    {
    case 0xEF53:
      return "extfs";
    case 0x58465342:
      return "xfs";
    case 0x9123683E:
      return "btrfs";
    case 0x01021994:
      return "tmpfs";
    case 0x794C7630:
      return "overlayfs";
    case 0x2FC12FC1:
      return "zfs";
    case 0xF2F52010:
      return "f2fs";
    default:
      return "<unknown>";
    }
}

static json_t *
ovl_status (struct gr_driver *d)
{
  return json_pack ("[[ss][ss][ss][ss]]", "Backing Filesystem", backing_fs (d->home_fd), "Supports d_type",
                    "true", "Native Overlay Diff", "true", "userxattr", "false");
}

static int
ovl_metadata (struct gr_driver *d, json_t **out, const char *id, gr_error_t *err)
{
  if (!ovl_exists (d, id))
    return gr_make_error (err, ENOENT, "overlay2 layer %s does not exist", id);
  json_t *m = json_object ();
  json_object_set_new (m, "WorkDir", json_sprintf ("%s/%s/work", d->home, id));
  json_object_set_new (m, "MergedDir", json_sprintf ("%s/%s/merged", d->home, id));
  json_object_set_new (m, "UpperDir", json_sprintf ("%s/%s/diff", d->home, id));
  cleanup_free char *lower_path = xasprintf ("%s/lower", id);
  cleanup_free char *lower = NULL;
  if (gr_read_file_at (&lower, NULL, d->home_fd, lower_path, 1 << 20, NULL) == 0 && lower[0])
    {
      cleanup_buf struct gr_buf b = { 0 };
      char *save = NULL;
      for (char *tok = strtok_r (lower, ":", &save); tok; tok = strtok_r (NULL, ":", &save))
        {
          char target[4096];
          ssize_t n = readlinkat (d->home_fd, tok, target, sizeof (target) - 1);
          if (n < 0)
            {
              json_decref (m);
              return gr_make_error (err, errno, "overlay2 layer %s: readlink %s", id, tok);
            }
          target[n] = '\0';
          /* l/<link> -> ../<id>/diff, i.e. <home>/<id>/diff */
          const char *rel = strncmp (target, "../", 3) == 0 ? target + 3 : target;
          gr_buf_printf (&b, "%s%s/%s", b.len ? ":" : "", d->home, rel);
        }
      json_object_set_new (m, "LowerDir", json_string (b.data));
    }
  *out = m;
  return 0;
}

static int
ovl_cleanup (struct gr_driver *d, gr_error_t *err)
{
  return 0;
}

const struct gr_backend_ops gr_backend_overlay2 = {
  .name = "overlay2",
  .init = ovl_init,
  .release = ovl_release,
  .create = ovl_create,
  .remove = ovl_remove,
  .get = ovl_get,
  .put = ovl_put,
  .exists = ovl_exists,
  .apply_diff = ovl_apply_diff,
  .diff = ovl_diff,
  .changes = ovl_changes,
  .diff_size = ovl_diff_size,
  .status = ovl_status,
  .metadata = ovl_metadata,
  .cleanup = ovl_cleanup,
};

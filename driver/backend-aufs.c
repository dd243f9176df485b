/* The aufs backend: Docker's aufs layout (layers/, diff/, mnt/), mounted
   with kernel aufs where the kernel has it and with overlayfs where it
   does not.  The whiteout encoding of the diff dirs follows the mount
   method and is recorded in <home>/whiteout-format so it is never
   misread; a root written by the other method is converted at Init.

   With overlayfs, work/<id> is a layer's overlay work dir, and an empty
   work/<id>.ro marks an image layer: one ApplyDiff filled.  dockerd never
   writes into those (it mounts them only to read them back, for docker
   save and push), so they are mounted read-only, all of their chain as
   lower layers: unmounting a read-only overlay does not sync the whole
   upper file system (a rw one does, ~0.1 s per layer while dockerd
   writes its save files).  Unmarked layers (containers' and init layers,
   and any layer of a root written before the mark existed) mount rw.  */
#include "config.h"

#include "driver.h"
#include "fsutil.h"
#include "mount.h"
#include "whiteout.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#define FORMAT_FILE "whiteout-format"
#define REMOVING_SUFFIX "-removing"
#define RO_MARK_SUFFIX ".ro"
/* dockerd allows 125 image layers, plus init and rw.  */
#define MAX_CHAIN 127

struct aufs_mount
{
  char *id;
  unsigned count;
  struct aufs_mount *next;
};

struct aufs
{
  pthread_mutex_t lock; /* mounts, busy */
  /* Serialises the writers of layers/ (Create, Remove), so that a child is
     never created on a parent that a concurrent Remove is deleting.  */
  pthread_mutex_t layers_lock;
  enum gr_whiteout_format whiteouts;
  bool kernel_aufs;
  struct aufs_mount *mounts;
  /* IDs with an ApplyDiff or a Remove running: other requests on them are
     refused rather than interleaved with a half-written layer.  */
  char **busy;
  size_t n_busy;
};

static struct aufs *
priv (struct gr_driver *d)
{
  return d->priv;
}

static char *
layer_path (struct gr_driver *d, const char *kind, const char *id)
{
  return xasprintf ("%s/%s/%s", d->home, kind, id);
}

/* The image-layer mark of ID, relative to the home (see the top).  */
static char *
ro_mark (const char *id)
{
  return xasprintf ("work/%s" RO_MARK_SUFFIX, id);
}

static void
chain_free (char **chain)
{
  if (chain == NULL)
    return;
  for (char **p = chain; *p; p++)
    free (*p);
  free (chain);
}

static void
cleanup_chainp (char ***chain)
{
  chain_free (*chain);
}
#define cleanup_chain __attribute__ ((cleanup (cleanup_chainp)))

/* Read layers/<id>: the parent chain, nearest first, NULL-terminated.  */
static int
read_chain (char ***out, size_t *n_out, struct gr_driver *d, const char *id, gr_error_t *err)
{
  cleanup_free char *rel = xasprintf ("layers/%s", id);
  cleanup_free char *data = NULL;
  cleanup_chain char **chain = xzalloc (sizeof (char *));
  size_t n = 0;

  if (gr_read_file_at (&data, NULL, d->home_fd, rel, 1 << 20, err) < 0)
    {
      if (gr_error_status (err) == ENOENT)
        {
          gr_error_release (err);
          return gr_make_error (err, ENOENT, "layer %s does not exist", id);
        }
      return gr_error_wrap (err, "layer %s", id);
    }
  for (char *save = NULL, *line = strtok_r (data, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
    {
      if (line[0] == '\0')
        continue;
      if (gr_id_validate (line, err) < 0)
        return gr_error_wrap (err, "layer %s: corrupt parent chain", id);
      if (n >= MAX_CHAIN)
        return gr_make_error (err, ELOOP, "layer %s: parent chain deeper than %d", id, MAX_CHAIN);
      chain = xrealloc (chain, (n + 2) * sizeof (char *));
      chain[n++] = xstrdup (line);
      chain[n] = NULL;
    }
  *out = gr_steal (chain);
  if (n_out)
    *n_out = n;
  return 0;
}

/* KIND/ID under Home is a real directory.  A corrupt or hostile root may
   put a symlink there: Get must not hand it out (dockerd writes through
   it) and mount(2) must not follow it to an upper, lower or target
   outside Home.  */
static int
check_layer_dir (struct gr_driver *d, const char *kind, const char *id, gr_error_t *err)
{
  cleanup_close int kfd = openat (d->home_fd, kind, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  struct stat st;
  if (kfd < 0)
    return gr_make_error (err, errno, "`%s/%s`: %s", d->home, kind, strerror (errno));
  if (fstatat (kfd, id, &st, AT_SYMLINK_NOFOLLOW) < 0)
    return gr_make_error (err, errno, "layer %s: `%s/%s/%s`: %s", id, d->home, kind, id, strerror (errno));
  if (! S_ISDIR (st.st_mode))
    return gr_make_error (err, ENOTDIR, "layer %s: `%s/%s/%s` is not a directory", id, d->home, kind, id);
  return 0;
}

/* With a->lock held.  */
static bool
busy_locked (struct aufs *a, const char *id)
{
  for (size_t i = 0; i < a->n_busy; i++)
    if (strcmp (a->busy[i], id) == 0)
      return true;
  return false;
}

static int
busy_error (const char *id, gr_error_t *err)
{
  return gr_make_error (err, EBUSY, "layer %s is busy: an ApplyDiff or Remove of it is running", id);
}

static int
check_not_busy (struct gr_driver *d, const char *id, gr_error_t *err)
{
  struct aufs *a = priv (d);
  pthread_mutex_lock (&a->lock);
  bool busy = busy_locked (a, id);
  pthread_mutex_unlock (&a->lock);
  return busy ? busy_error (id, err) : 0;
}

/* With a->lock held.  */
static void
busy_add_locked (struct aufs *a, const char *id)
{
  a->busy = xrealloc (a->busy, (a->n_busy + 1) * sizeof (char *));
  a->busy[a->n_busy++] = xstrdup (id);
}

static void
busy_remove (struct aufs *a, const char *id)
{
  pthread_mutex_lock (&a->lock);
  for (size_t i = 0; i < a->n_busy; i++)
    if (strcmp (a->busy[i], id) == 0)
      {
        free (a->busy[i]);
        a->busy[i] = a->busy[--a->n_busy];
        break;
      }
  pthread_mutex_unlock (&a->lock);
}

static bool
aufs_exists (struct gr_driver *d, const char *id)
{
  cleanup_free char *rel = xasprintf ("layers/%s", id);
  struct stat st;
  return gr_id_validate (id, NULL) == 0 && fstatat (d->home_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0
         && S_ISREG (st.st_mode);
}

/* Whiteout conversion of one diff dir, recursively.  */
static int convert_dir (int dfd, enum gr_whiteout_format from, enum gr_whiteout_format to,
                        gr_error_t *err);

static int
convert_entry (int dfd, const char *name, const struct stat *st, enum gr_whiteout_format from,
               enum gr_whiteout_format to, gr_error_t *err)
{
  if (from == GR_WHITEOUT_AUFS && strncmp (name, GR_WH_PREFIX, strlen (GR_WH_PREFIX)) == 0)
    {
      enum gr_whiteout_kind kind;
      const char *target = NULL;
      if (gr_whiteout_classify_name (name, &kind, &target, err) < 0)
        return -1;
      if (kind == GR_WH_FILE)
        {
          cleanup_free char *t = xstrdup (target);
          if (gr_rm_rf_at (dfd, t, err) < 0 || gr_whiteout_create (dfd, t, to, err) < 0)
            return -1;
        }
      else if (kind == GR_WH_OPAQUE_DIR)
        {
          if (gr_whiteout_make_opaque (dfd, to, err) < 0)
            return -1;
        }
      return gr_rm_rf_at (dfd, name, err);
    }
  if (from == GR_WHITEOUT_OVERLAY && gr_whiteout_is_overlay_file (st))
    {
      if (unlinkat (dfd, name, 0) < 0)
        return gr_make_error (err, errno, "unlink `%s`", name);
      return gr_whiteout_create (dfd, name, to, err);
    }
  if (S_ISDIR (st->st_mode))
    {
      cleanup_close int child = openat (dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (child < 0)
        return gr_make_error (err, errno, "open `%s`", name);
      if (convert_dir (child, from, to, err) < 0)
        return gr_error_wrap (err, "%s", name);
    }
  return 0;
}

static int
convert_dir (int dfd, enum gr_whiteout_format from, enum gr_whiteout_format to, gr_error_t *err)
{
  cleanup_dir DIR *dir = gr_dir_open_fd (dfd, err);
  if (dir == NULL)
    return -1;
  if (from == GR_WHITEOUT_OVERLAY && gr_whiteout_is_overlay_opaque (dfd, ""))
    {
      if (gr_whiteout_make_opaque (dfd, to, err) < 0)
        return -1;
      if (fremovexattr (dfd, GR_OVL_OPAQUE_XATTR) < 0 && errno != ENODATA)
        return gr_make_error (err, errno, "remove opaque xattr");
    }
  /* Collect names first: conversion adds and removes entries.  */
  cleanup_chain char **names = xzalloc (sizeof (char *));
  size_t n = 0;
  for (struct dirent *de; (errno = 0, de = readdir (dir));)
    {
      if (strcmp (de->d_name, ".") == 0 || strcmp (de->d_name, "..") == 0)
        continue;
      names = xrealloc (names, (n + 2) * sizeof (char *));
      names[n++] = xstrdup (de->d_name);
      names[n] = NULL;
    }
  if (errno)
    return gr_make_error (err, errno, "readdir");
  for (size_t i = 0; i < n; i++)
    {
      struct stat st;
      if (fstatat (dfd, names[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
        {
          if (errno == ENOENT)
            continue;
          return gr_make_error (err, errno, "stat `%s`", names[i]);
        }
      if (convert_entry (dfd, names[i], &st, from, to, err) < 0)
        return -1;
    }
  return 0;
}

/* Bring every diff dir to the encoding the mount method needs.  Each step
   is idempotent, and the format file is rewritten only at the end, so a
   crash midway is finished by the next Init.  */
static int
convert_root (struct gr_driver *d, enum gr_whiteout_format from, enum gr_whiteout_format to,
              gr_error_t *err)
{
  cleanup_close int diff_fd = gr_open_dir_at (d->home_fd, "diff", err);
  if (diff_fd < 0)
    return -1;
  if (convert_dir (diff_fd, from, to, err) < 0)
    return gr_error_wrap (err, "convert whiteouts from %s to %s", gr_whiteout_format_name (from),
                          gr_whiteout_format_name (to));
  return 0;
}

static bool
dir_has_entries (int dirfd, const char *name)
{
  cleanup_dir DIR *dir = gr_dir_open_at (dirfd, name, NULL);
  if (dir == NULL)
    return false;
  for (struct dirent *de; (de = readdir (dir));)
    if (strcmp (de->d_name, ".") && strcmp (de->d_name, ".."))
      return true;
  return false;
}

static int
setup_whiteout_format (struct gr_driver *d, gr_error_t *err)
{
  struct aufs *a = priv (d);
  enum gr_whiteout_format want = a->kernel_aufs ? GR_WHITEOUT_AUFS : GR_WHITEOUT_OVERLAY;
  enum gr_whiteout_format have;
  cleanup_free char *recorded = NULL;

  if (gr_read_file_at (&recorded, NULL, d->home_fd, FORMAT_FILE, 4096, err) == 0)
    {
      recorded[strcspn (recorded, "\n")] = '\0';
      if (gr_whiteout_format_parse (recorded, &have, err) < 0)
        return gr_error_wrap (err, "`%s/%s`", d->home, FORMAT_FILE);
    }
  else if (gr_error_status (err) == ENOENT)
    {
      gr_error_release (err);
      /* No record: a root from Docker's own aufs driver keeps .wh. files;
         an empty root takes what we mount with.  */
      have = dir_has_entries (d->home_fd, "layers") ? GR_WHITEOUT_AUFS : want;
    }
  else
    return -1;
  if (have != want && convert_root (d, have, want, err) < 0)
    return -1;
  a->whiteouts = want;
  const char *name = gr_whiteout_format_name (want);
  return gr_write_file_atomic (d->home_fd, FORMAT_FILE, name, strlen (name), 0600, err);
}

/* Finish removals a crash interrupted: <kind>/<id>-removing.  */
static int
clean_removing (struct gr_driver *d, const char *kind, gr_error_t *err)
{
  cleanup_close int dfd = gr_open_dir_at (d->home_fd, kind, err);
  if (dfd < 0)
    return -1;
  cleanup_dir DIR *dir = gr_dir_open_fd (dfd, err);
  if (dir == NULL)
    return gr_error_wrap (err, "`%s`", kind);
  size_t sl = strlen (REMOVING_SUFFIX);
  for (struct dirent *de; (de = readdir (dir));)
    {
      size_t n = strlen (de->d_name);
      if (n > sl && strcmp (de->d_name + n - sl, REMOVING_SUFFIX) == 0
          && gr_rm_rf_at (dfd, de->d_name, err) < 0)
        return gr_error_wrap (err, "%s", kind);
    }
  return 0;
}

static int
aufs_init (struct gr_driver *d, const struct gr_driver_opts *opts, gr_error_t *err)
{
  struct aufs *a = xzalloc (sizeof (*a));
  const char *method = opts && opts->mount_method ? opts->mount_method : "auto";

  pthread_mutex_init (&a->lock, NULL);
  pthread_mutex_init (&a->layers_lock, NULL);
  d->priv = a;
  if (opts && opts->n_opts > 0)
    return gr_make_error (err, EINVAL, "unknown storage option `%s`", opts->opts[0]);
  if (strcmp (method, "auto") == 0 || method[0] == '\0')
    a->kernel_aufs = gr_mount_fs_supported ("aufs");
  else if (strcmp (method, "aufs") == 0)
    {
      if (! gr_mount_fs_supported ("aufs"))
        return gr_make_error (err, ENODEV, "mount method aufs: this kernel has no aufs");
      a->kernel_aufs = true;
    }
  else if (strcmp (method, "overlay") == 0)
    a->kernel_aufs = false;
  else
    return gr_make_error (err, EINVAL, "unknown mount method `%s` (auto, aufs, overlay)", method);
  if (! a->kernel_aufs && ! gr_mount_fs_supported ("overlay"))
    return gr_make_error (err, ENODEV, "neither aufs nor overlay is supported by this kernel");

  static const char *const dirs[] = { "layers", "diff", "mnt", "work" };
  for (size_t i = 0; i < sizeof (dirs) / sizeof (dirs[0]); i++)
    {
      struct stat st;
      if (mkdirat (d->home_fd, dirs[i], 0710) < 0 && errno != EEXIST)
        return gr_make_error (err, errno, "mkdir `%s/%s`", d->home, dirs[i]);
      /* Every path below is built as <kind>/<id> from Home: a symlinked
         kind dir would make Remove rename and delete outside Home.  */
      if (fstatat (d->home_fd, dirs[i], &st, AT_SYMLINK_NOFOLLOW) < 0)
        return gr_make_error (err, errno, "stat `%s/%s`: %s", d->home, dirs[i], strerror (errno));
      if (! S_ISDIR (st.st_mode))
        return gr_make_error (err, ENOTDIR, "`%s/%s` is not a directory (a symlink?): refusing this graph root",
                              d->home, dirs[i]);
    }

  /* After a crash: stale mounts and half-done removals.  */
  cleanup_free char *mnt = xasprintf ("%s/mnt", d->home);
  if (gr_unmount_below (mnt, err) < 0)
    return -1;
  if (clean_removing (d, "diff", err) < 0 || clean_removing (d, "mnt", err) < 0
      || clean_removing (d, "work", err) < 0)
    return -1;
  return setup_whiteout_format (d, err);
}

static void
aufs_release (struct gr_driver *d)
{
  struct aufs *a = priv (d);
  for (struct aufs_mount *m = a->mounts, *next; m; m = next)
    {
      next = m->next;
      free (m->id);
      free (m);
    }
  for (size_t i = 0; i < a->n_busy; i++)
    free (a->busy[i]);
  free (a->busy);
  pthread_mutex_destroy (&a->lock);
  pthread_mutex_destroy (&a->layers_lock);
  free (a);
  d->priv = NULL;
}

static int
validate_parent (struct gr_driver *d, const char *parent, gr_error_t *err)
{
  if (parent == NULL || parent[0] == '\0')
    return 0;
  if (gr_id_validate (parent, err) < 0)
    return gr_error_wrap (err, "parent");
  if (! aufs_exists (d, parent))
    return gr_make_error (err, ENOENT, "parent layer %s does not exist", parent);
  return 0;
}

static int aufs_create_locked (struct gr_driver *d, const char *id, const char *parent, gr_error_t *err);

static int
aufs_create (struct gr_driver *d, const char *id, const char *parent, bool rw, gr_error_t *err)
{
  struct aufs *a = priv (d);
  pthread_mutex_lock (&a->layers_lock);
  int ret = aufs_create_locked (d, id, parent, err);
  pthread_mutex_unlock (&a->layers_lock);
  (void) rw;
  return ret;
}

static int
aufs_create_locked (struct gr_driver *d, const char *id, const char *parent, gr_error_t *err)
{
  cleanup_buf struct gr_buf chain = { 0 };
  cleanup_free char *diff = xasprintf ("diff/%s", id);
  cleanup_free char *mnt = xasprintf ("mnt/%s", id);
  cleanup_free char *layers = xasprintf ("layers/%s", id);

  if (gr_id_validate (id, err) < 0 || validate_parent (d, parent, err) < 0)
    return -1;
  if (aufs_exists (d, id))
    return gr_make_error (err, EEXIST, "layer %s already exists", id);
  /* A mark left by a removal that crashed must not make this one ro.  */
  cleanup_free char *mark = ro_mark (id);
  if (unlinkat (d->home_fd, mark, 0) < 0 && errno != ENOENT)
    return gr_make_error (err, errno, "layer %s: unlink `%s`", id, mark);
  if (parent && parent[0])
    {
      cleanup_free char *parent_chain = NULL;
      cleanup_free char *rel = xasprintf ("layers/%s", parent);
      size_t depth = 0;
      if (gr_read_file_at (&parent_chain, NULL, d->home_fd, rel, 1 << 20, err) < 0)
        return gr_error_wrap (err, "parent layer %s", parent);
      for (const char *p = parent_chain; *p; p++)
        depth += *p == '\n';
      if (depth + 1 >= MAX_CHAIN)
        return gr_make_error (err, ELOOP, "layer %s: more than %d parents", id, MAX_CHAIN);
      gr_buf_printf (&chain, "%s\n%s", parent, parent_chain);
      if (chain.len && chain.data[chain.len - 1] != '\n')
        gr_buf_puts (&chain, "\n");
    }
  /* Directories first, the layers file last: Exists() means complete.  */
  if ((mkdirat (d->home_fd, diff, 0755) < 0 && errno != EEXIST)
      || (mkdirat (d->home_fd, mnt, 0755) < 0 && errno != EEXIST))
    return gr_make_error (err, errno, "layer %s: mkdir", id);
  if (gr_write_file_atomic (d->home_fd, layers, chain.data ? chain.data : "", chain.len, 0644, err) < 0)
    return gr_error_wrap (err, "layer %s", id);
  return 0;
}

static struct aufs_mount **
find_mount (struct aufs *a, const char *id)
{
  struct aufs_mount **pp = &a->mounts;
  for (; *pp; pp = &(*pp)->next)
    if (strcmp ((*pp)->id, id) == 0)
      break;
  return pp;
}

static int
do_mount (struct gr_driver *d, const char *id, char **chain, size_t n, gr_error_t *err)
{
  struct aufs *a = priv (d);
  cleanup_free char *target = layer_path (d, "mnt", id);
  cleanup_free char *mark = ro_mark (id);
  /* dirs[0]: the layer's own diff dir; dirs[1..n]: its chain's.  */
  char **dirs = xzalloc ((n + 1) * sizeof (char *));
  const char *const *lowers = (const char *const *) dirs + 1;
  int ret;

  dirs[0] = layer_path (d, "diff", id);
  for (size_t i = 0; i < n; i++)
    dirs[i + 1] = layer_path (d, "diff", chain[i]);
  if (a->kernel_aufs)
    ret = gr_mount_aufs (target, dirs[0], lowers, n, NULL, err);
  else if (faccessat (d->home_fd, mark, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
    ret = gr_mount_overlay (target, NULL, NULL, (const char *const *) dirs, n + 1, NULL, err);
  else
    {
      cleanup_free char *work_rel = xasprintf ("work/%s", id);
      cleanup_free char *work = layer_path (d, "work", id);
      if (mkdirat (d->home_fd, work_rel, 0700) < 0 && errno != EEXIST)
        ret = gr_make_error (err, errno, "mkdir `%s`", work);
      else
        ret = gr_mount_overlay (target, dirs[0], work, lowers, n, NULL, err);
    }
  for (size_t i = 0; i <= n; i++)
    free (dirs[i]);
  free (dirs);
  return ret;
}

static int
aufs_get (struct gr_driver *d, char **path, const char *id, gr_error_t *err)
{
  struct aufs *a = priv (d);
  cleanup_chain char **chain = NULL;
  size_t n = 0;

  if (gr_id_validate (id, err) < 0 || read_chain (&chain, &n, d, id, err) < 0
      || check_not_busy (d, id, err) < 0 || check_layer_dir (d, "diff", id, err) < 0)
    return -1;
  if (n > 0 && check_layer_dir (d, "mnt", id, err) < 0)
    return -1;
  for (size_t i = 0; i < n; i++)
    if (check_layer_dir (d, "diff", chain[i], err) < 0)
      return gr_error_wrap (err, "layer %s: parent", id);
  if (n == 0)
    {
      /* A base layer is served from its diff dir.  */
      *path = layer_path (d, "diff", id);
      return 0;
    }
  pthread_mutex_lock (&a->lock);
  struct aufs_mount **pp = find_mount (a, id);
  int ret = 0;
  /* Checked again under the lock: a Remove may have started since.  */
  bool busy = busy_locked (a, id);
  if (busy)
    ret = busy_error (id, err);
  else if (*pp == NULL)
    {
      ret = do_mount (d, id, chain, n, err);
      if (ret == 0)
        {
          struct aufs_mount *m = xzalloc (sizeof (*m));
          m->id = xstrdup (id);
          m->next = a->mounts;
          a->mounts = m;
          pp = &a->mounts;
        }
    }
  if (ret == 0)
    (*pp)->count++;
  pthread_mutex_unlock (&a->lock);
  if (ret < 0)
    return busy ? -1 : gr_error_wrap (err, "layer %s", id);
  *path = layer_path (d, "mnt", id);
  return 0;
}

/* With the lock held: unmount ID and forget it.  */
static int
unmount_locked (struct gr_driver *d, struct aufs_mount **pp, const char *id, gr_error_t *err)
{
  cleanup_free char *target = layer_path (d, "mnt", id);
  if (gr_unmount (target, err) < 0)
    return -1;
  if (pp && *pp)
    {
      struct aufs_mount *m = *pp;
      *pp = m->next;
      free (m->id);
      free (m);
    }
  return 0;
}

static int
aufs_put (struct gr_driver *d, const char *id, gr_error_t *err)
{
  struct aufs *a = priv (d);
  int ret = 0;

  if (gr_id_validate (id, err) < 0)
    return -1;
  pthread_mutex_lock (&a->lock);
  struct aufs_mount **pp = find_mount (a, id);
  if (*pp && --(*pp)->count == 0)
    ret = unmount_locked (d, pp, id, err);
  pthread_mutex_unlock (&a->lock);
  return ret;
}

/* A layer whose layers/ file names ID as a parent, into *CHILD; 0 if
   none.  Unreadable or oversized files (a corrupt root) are skipped.  */
static int
find_child (char **child, struct gr_driver *d, const char *id, gr_error_t *err)
{
  cleanup_close int dfd = gr_open_dir_at (d->home_fd, "layers", err);
  if (dfd < 0)
    return -1;
  cleanup_dir DIR *dir = gr_dir_open_fd (dfd, err);
  if (dir == NULL)
    return gr_error_wrap (err, "read `%s/layers`", d->home);
  for (struct dirent *de; (de = readdir (dir));)
    {
      cleanup_free char *data = NULL;
      gr_error_t e2 = NULL;
      if (gr_id_validate (de->d_name, NULL) < 0 || strcmp (de->d_name, id) == 0)
        continue;
      if (gr_read_file_at (&data, NULL, dfd, de->d_name, 1 << 20, &e2) < 0)
        {
          gr_error_release (&e2);
          continue;
        }
      for (char *save = NULL, *line = strtok_r (data, "\n", &save); line; line = strtok_r (NULL, "\n", &save))
        if (strcmp (line, id) == 0)
          {
            *child = xstrdup (de->d_name);
            return 1;
          }
    }
  return 0;
}

static int aufs_remove_locked (struct gr_driver *d, const char *id, gr_error_t *err);

static int
aufs_remove (struct gr_driver *d, const char *id, gr_error_t *err)
{
  struct aufs *a = priv (d);
  static const char *const kinds[] = { "mnt", "diff", "work" };
  cleanup_free char *child = NULL;
  int ret;

  if (gr_id_validate (id, err) < 0)
    return -1;
  pthread_mutex_lock (&a->layers_lock);
  pthread_mutex_lock (&a->lock);
  if (busy_locked (a, id))
    {
      pthread_mutex_unlock (&a->lock);
      pthread_mutex_unlock (&a->layers_lock);
      return busy_error (id, err);
    }
  busy_add_locked (a, id);
  pthread_mutex_unlock (&a->lock);
  ret = find_child (&child, d, id, err);
  if (ret > 0)
    ret = gr_make_error (err, EBUSY, "layer %s is the parent of layer %s: remove the child first", id, child);
  if (ret == 0)
    ret = aufs_remove_locked (d, id, err);
  pthread_mutex_unlock (&a->layers_lock);
  /* The renamed dirs are no longer reachable by ID: delete them unlocked.  */
  for (size_t i = 0; ret == 0 && i < sizeof (kinds) / sizeof (kinds[0]); i++)
    {
      cleanup_free char *to = xasprintf ("%s/%s%s", kinds[i], id, REMOVING_SUFFIX);
      if (gr_rm_rf_at (d->home_fd, to, err) < 0)
        ret = gr_error_wrap (err, "remove layer %s", id);
    }
  busy_remove (a, id);
  return ret;
}

/* Unmount, rename to -removing, drop layers/<id>; with layers_lock held.  */
static int
aufs_remove_locked (struct gr_driver *d, const char *id, gr_error_t *err)
{
  struct aufs *a = priv (d);
  static const char *const kinds[] = { "mnt", "diff", "work" };
  cleanup_free char *layers = xasprintf ("layers/%s", id);
  int ret = 0;

  pthread_mutex_lock (&a->lock);
  struct aufs_mount **pp = find_mount (a, id);
  cleanup_free char *target = layer_path (d, "mnt", id);
  if (*pp || gr_mount_is_mountpoint (target))
    ret = unmount_locked (d, pp, id, err);
  pthread_mutex_unlock (&a->lock);
  if (ret < 0)
    return gr_error_wrap (err, "remove layer %s", id);

  /* Rename first so a crash leaves only -removing dirs for Init to sweep.  */
  for (size_t i = 0; i < sizeof (kinds) / sizeof (kinds[0]); i++)
    {
      cleanup_free char *from = xasprintf ("%s/%s", kinds[i], id);
      cleanup_free char *to = xasprintf ("%s/%s%s", kinds[i], id, REMOVING_SUFFIX);
      if (renameat (d->home_fd, from, d->home_fd, to) < 0 && errno != ENOENT)
        return gr_make_error (err, errno, "remove layer %s: rename `%s`", id, from);
    }
  cleanup_free char *mark = ro_mark (id);
  if (unlinkat (d->home_fd, mark, 0) < 0 && errno != ENOENT)
    return gr_make_error (err, errno, "remove layer %s: unlink `%s`", id, mark);
  if (unlinkat (d->home_fd, layers, 0) < 0 && errno != ENOENT)
    return gr_make_error (err, errno, "remove layer %s: unlink `%s`", id, layers);
  return 0;
}

static int
open_diff (struct gr_driver *d, const char *id, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0 || check_not_busy (d, id, err) < 0)
    return -1;
  if (! aufs_exists (d, id))
    return gr_make_error (err, ENOENT, "layer %s does not exist", id);
  cleanup_free char *rel = xasprintf ("diff/%s", id);
  return gr_open_dir_at (d->home_fd, rel, err);
}

static int
aufs_diff_size (struct gr_driver *d, int64_t *size, const char *id, const char *parent,
                gr_error_t *err)
{
  cleanup_close int fd = open_diff (d, id, err);
  if (fd < 0)
    return -1;
  return gr_dir_size_at (fd, size, err);
}

static int aufs_apply_diff_busy (struct gr_driver *d, int64_t *size, const char *id, int tar_fd,
                                 gr_error_t *err);

/* ApplyDiff fills a fresh layer, as dockerd uses it.  Into a mounted
   layer, one that already holds files (a failure would wipe them) or one
   being applied or removed, it is refused.  */
static int
aufs_apply_diff (struct gr_driver *d, int64_t *size, const char *id, const char *parent,
                 int tar_fd, gr_error_t *err)
{
  struct aufs *a = priv (d);
  int ret;

  if (gr_id_validate (id, err) < 0)
    return -1;
  pthread_mutex_lock (&a->lock);
  if (busy_locked (a, id))
    ret = busy_error (id, err);
  else if (*find_mount (a, id))
    ret = gr_make_error (err, EBUSY, "layer %s is mounted: ApplyDiff needs an unmounted layer", id);
  else
    {
      busy_add_locked (a, id);
      ret = 0;
    }
  pthread_mutex_unlock (&a->lock);
  if (ret < 0)
    return -1;
  ret = aufs_apply_diff_busy (d, size, id, tar_fd, err);
  busy_remove (a, id);
  return ret;
}

static int
aufs_apply_diff_busy (struct gr_driver *d, int64_t *size, const char *id, int tar_fd, gr_error_t *err)
{
  /* dockerd's aufs and overlay2 both extract with Untar: 0755 parents */
  struct gr_apply_opts opts = { .whiteouts = priv (d)->whiteouts, .implicit_dir_mode = 0755 };
  cleanup_close int fd = -1;
  if (! aufs_exists (d, id))
    return gr_make_error (err, ENOENT, "layer %s does not exist", id);
  if (check_layer_dir (d, "diff", id, err) < 0)
    return -1;
  cleanup_free char *rel = xasprintf ("diff/%s", id);
  fd = gr_open_dir_at (d->home_fd, rel, err);
  if (fd < 0)
    return -1;
  if (dir_has_entries (fd, "."))
    return gr_make_error (err, EEXIST, "layer %s already holds files: ApplyDiff needs an empty layer", id);
  if (gr_archive_apply (fd, tar_fd, &opts, err) < 0)
    {
      gr_error_t e2 = NULL;
      /* Leave no half layer behind.  */
      if (gr_empty_dir_at (fd, &e2) < 0)
        gr_error_release (&e2);
      return gr_error_wrap (err, "apply layer %s", id);
    }
  /* An image layer from now on (see the top).  Without the mark it only
     mounts rw, as before: not worth failing the layer for.  */
  cleanup_free char *mark = ro_mark (id);
  int mfd = openat (d->home_fd, mark, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (mfd >= 0)
    close (mfd);
  return gr_dir_size_at (fd, size, err);
}

static int
aufs_diff (struct gr_driver *d, int out_fd, const char *id, const char *parent, gr_error_t *err)
{
  cleanup_close int fd = open_diff (d, id, err);
  if (fd < 0)
    return -1;
  if (gr_archive_diff (out_fd, fd, priv (d)->whiteouts, err) < 0)
    return gr_error_wrap (err, "diff of layer %s", id);
  return 0;
}

static int
aufs_changes (struct gr_driver *d, json_t **out, const char *id, const char *parent,
              gr_error_t *err)
{
  cleanup_chain char **chain = NULL;
  size_t n = 0;
  cleanup_close int fd = open_diff (d, id, err);
  int ret = -1;

  if (fd < 0 || read_chain (&chain, &n, d, id, err) < 0)
    return -1;
  int *lowers = xzalloc ((n + 1) * sizeof (int));
  size_t opened = 0;
  for (; opened < n; opened++)
    {
      cleanup_free char *rel = xasprintf ("diff/%s", chain[opened]);
      lowers[opened] = gr_open_dir_at (d->home_fd, rel, err);
      if (lowers[opened] < 0)
        goto out;
    }
  ret = gr_archive_changes_merged (out, fd, lowers, n, priv (d)->whiteouts, err);
out:
  for (size_t i = 0; i < opened; i++)
    close (lowers[i]);
  free (lowers);
  return ret < 0 ? gr_error_wrap (err, "changes of layer %s", id) : 0;
}

static json_t *
aufs_status (struct gr_driver *d)
{
  struct aufs *a = priv (d);
  size_t dirs = 0;
  cleanup_dir DIR *dir = gr_dir_open_at (d->home_fd, "layers", NULL);
  for (struct dirent *de; dir && (de = readdir (dir));)
    if (de->d_name[0] != '.')
      dirs++;
  json_t *st = json_array ();
  json_array_append_new (st, json_pack ("[ss]", "Root Dir", d->home));
  json_array_append_new (st, json_pack ("[ss]", "Backing Filesystem", "extfs"));
  cleanup_free char *ndirs = xasprintf ("%zu", dirs);
  json_array_append_new (st, json_pack ("[ss]", "Dirs", ndirs));
  json_array_append_new (st, json_pack ("[ss]", "Dirperm1 Supported", "true"));
  json_array_append_new (st, json_pack ("[ss]", "Mount Method", a->kernel_aufs ? "aufs" : "overlay"));
  json_array_append_new (st, json_pack ("[ss]", "Whiteouts", gr_whiteout_format_name (a->whiteouts)));
  return st;
}

static int
aufs_metadata (struct gr_driver *d, json_t **out, const char *id, gr_error_t *err)
{
  if (gr_id_validate (id, err) < 0)
    return -1;
  if (! aufs_exists (d, id))
    return gr_make_error (err, ENOENT, "layer %s does not exist", id);
  cleanup_free char *diff = layer_path (d, "diff", id);
  cleanup_free char *mnt = layer_path (d, "mnt", id);
  *out = json_pack ("{ssss}", "DiffDir", diff, "MountDir", mnt);
  return 0;
}

static int
aufs_cleanup (struct gr_driver *d, gr_error_t *err)
{
  struct aufs *a = priv (d);
  int ret = 0;
  pthread_mutex_lock (&a->lock);
  while (a->mounts && ret == 0)
    {
      cleanup_free char *id = xstrdup (a->mounts->id);
      ret = unmount_locked (d, &a->mounts, id, err);
    }
  pthread_mutex_unlock (&a->lock);
  return ret;
}

const struct gr_backend_ops gr_backend_aufs = {
  .name = "aufs",
  .init = aufs_init,
  .release = aufs_release,
  .create = aufs_create,
  .remove = aufs_remove,
  .get = aufs_get,
  .put = aufs_put,
  .exists = aufs_exists,
  .apply_diff = aufs_apply_diff,
  .diff = aufs_diff,
  .changes = aufs_changes,
  .diff_size = aufs_diff_size,
  .status = aufs_status,
  .metadata = aufs_metadata,
  .cleanup = aufs_cleanup,
};

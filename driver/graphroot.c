#include "config.h"

#include "graphroot.h"

#include "digest.h"
#include "fsutil.h"
#include "graphroot-internal.h"

#include <ctype.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

static const struct
{
  const char *driver_name;
  const char *backend;
} driver_names[] = {
  { "overlay2", "overlay2" },
  { "vfs", "vfs" },
  { "aufs", "aufs" },
  { "aufs-graphdriver", "aufs" },
};

const char *
gr_graphroot_backend_for (const char *driver_name)
{
  for (size_t i = 0; i < sizeof (driver_names) / sizeof (driver_names[0]); i++)
    if (driver_name && strcmp (driver_names[i].driver_name, driver_name) == 0)
      return driver_names[i].backend;
  return NULL;
}

/* Remove what an interrupted writer left in layerdb/tmp: each
   write-set-* dir names (in `cache-id`) the backend layer it created.  */
static int
clean_leftovers (struct gr_graphroot *root, gr_error_t *err)
{
  cleanup_close int tmp = gr_open_dir_at (root->image_fd, "layerdb/tmp", err);
  if (tmp < 0)
    return -1;
  cleanup_dir DIR *d = gr_dir_open_fd (tmp, err);
  if (d == NULL)
    return -1;
  for (struct dirent *de; (de = readdir (d));)
    {
      if (strncmp (de->d_name, "write-set-", 10) != 0)
        continue;
      cleanup_free char *cache_path = xasprintf ("%s/cache-id", de->d_name);
      cleanup_free char *cache_id = NULL;
      if (gr_read_file_at (&cache_id, NULL, tmp, cache_path, 256, NULL) == 0 && gr_hex64_valid (cache_id)
          && root->driver->ops->exists (root->driver, cache_id))
        {
          /* Registered under another chainID?  Then it is not ours to
             remove; a write set is only renamed once registered, so a
             leftover one never is.  */
          gr_error_t e = NULL;
          if (root->driver->ops->remove (root->driver, cache_id, &e) < 0)
            gr_error_release (&e);
        }
      if (gr_rm_rf_at (tmp, de->d_name, err) < 0)
        return -1;
    }
  return 0;
}

int
gr_graphroot_open (struct gr_graphroot **out, const char *root_dir, const char *driver_name, gr_error_t *err)
{
  const char *backend = gr_graphroot_backend_for (driver_name);
  if (backend == NULL)
    return gr_make_error (err, EINVAL, "unknown storage driver `%s` (overlay2, vfs, aufs, aufs-graphdriver)",
                          driver_name ? driver_name : "");
  return gr_graphroot_open_with (out, root_dir, driver_name, backend, NULL, err);
}

static int
check_driver_name (const char *driver_name, gr_error_t *err)
{
  if (driver_name == NULL || gr_id_validate (driver_name, NULL) < 0 || strchr (driver_name, '/'))
    return gr_make_error (err, EINVAL, "invalid storage driver name `%s`", driver_name ? driver_name : "");
  return 0;
}

/* A root object for the resolved data root RESOLVED, nothing open yet.  */
static struct gr_graphroot *
graphroot_new (const char *resolved, const char *driver_name)
{
  struct gr_graphroot *r = xzalloc (sizeof (*r));
  r->root = xstrdup (resolved);
  r->driver_name = xstrdup (driver_name);
  r->root_fd = r->image_fd = r->lock_fd = -1;
  pthread_mutex_init (&r->lock, NULL);
  pthread_cond_init (&r->cond, NULL);
  return r;
}

int
gr_graphroot_open_with (struct gr_graphroot **out, const char *root_dir, const char *driver_name,
                        const char *backend, const char *home_dir, gr_error_t *err)
{
  if (check_driver_name (driver_name, err) < 0)
    return -1;
  if (backend == NULL || gr_backend_lookup (backend) == NULL)
    return gr_make_error (err, EINVAL, "unknown storage backend `%s`", backend ? backend : "");
  if (home_dir && home_dir[0] != '/')
    return gr_make_error (err, EINVAL, "driver home `%s` is not an absolute path", home_dir);
  if (root_dir == NULL || root_dir[0] == '\0')
    return gr_make_error (err, EINVAL, "no graph root given");
  if (gr_mkdir_p_at (AT_FDCWD, root_dir, 0710, err) < 0)
    return gr_error_wrap (err, "graph root");
  char resolved[PATH_MAX];
  if (realpath (root_dir, resolved) == NULL)
    return gr_make_error (err, errno, "graph root `%s`", root_dir);

  struct gr_graphroot *r = graphroot_new (resolved, driver_name);

  /* As dockerd creates them: everything 0700 but layerdb/{sha256,tmp}.  */
  static const struct
  {
    const char *path;
    mode_t mode;
  } image_dirs[] = {
    { "imagedb", 0700 },
    { "imagedb/content", 0700 },
    { "imagedb/content/sha256", 0700 },
    { "imagedb/metadata", 0700 },
    { "imagedb/metadata/sha256", 0700 },
    { "layerdb", 0700 },
    { "layerdb/sha256", 0755 },
    { "layerdb/tmp", 0755 },
    { "distribution", 0700 },
  };
  cleanup_free char *image_rel = xasprintf ("image/%s", driver_name);
  cleanup_free char *home = home_dir ? xstrdup (home_dir) : xasprintf ("%s/%s", r->root, driver_name);
  r->root_fd = open (r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->root_fd < 0)
    {
      gr_make_error (err, errno, "open graph root `%s`", r->root);
      goto fail;
    }
  if (gr_mkdir_p_at (r->root_fd, "image", 0700, err) < 0
      || gr_mkdir_p_at (r->root_fd, image_rel, 0700, err) < 0)
    goto fail;
  r->image_fd = gr_open_dir_at (r->root_fd, image_rel, err);
  if (r->image_fd < 0)
    goto fail;
  for (size_t i = 0; i < sizeof (image_dirs) / sizeof (image_dirs[0]); i++)
    if (mkdirat (r->image_fd, image_dirs[i].path, image_dirs[i].mode) < 0 && errno != EEXIST)
      {
        gr_make_error (err, errno, "mkdir `%s/%s`", image_rel, image_dirs[i].path);
        goto fail;
      }
  /* flock() conflicts per inode: the exclusive sections lock the data
     root dir, the lifetime (shared) lock is on the image dir.  */
  r->lock_fd = open (r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->lock_fd < 0)
    {
      gr_make_error (err, errno, "open graph root `%s`", r->root);
      goto fail;
    }
  if (gr_driver_open (&r->driver, backend, home, NULL, err) < 0)
    goto fail;

  /* The lifetime lock: shared while open; whoever gets it exclusively at
     open time (no other writer alive) cleans interrupted writers up.  */
  if (flock (r->image_fd, LOCK_EX | LOCK_NB) == 0)
    {
      int c = clean_leftovers (r, err);
      flock (r->image_fd, LOCK_SH);
      if (c < 0)
        goto fail;
    }
  else if (flock (r->image_fd, LOCK_SH) < 0)
    {
      gr_make_error (err, errno, "flock `%s`", image_rel);
      goto fail;
    }
  *out = r;
  return 0;

fail:
  gr_error_wrap (err, "graph root `%s` (%s)", resolved, driver_name);
  gr_graphroot_free (r);
  return -1;
}

int
gr_graphroot_open_readonly (struct gr_graphroot **out, const char *root_dir, const char *driver_name,
                            gr_error_t *err)
{
  if (check_driver_name (driver_name, err) < 0)
    return -1;
  if (root_dir == NULL || root_dir[0] != '/')
    return gr_make_error (err, EINVAL, "graph root `%s` is not an absolute path", root_dir ? root_dir : "");
  char resolved[PATH_MAX];
  if (realpath (root_dir, resolved) == NULL)
    return gr_make_error (err, errno, "graph root `%s`", root_dir);

  struct gr_graphroot *r = graphroot_new (resolved, driver_name);
  r->readonly = true;
  cleanup_free char *image_rel = xasprintf ("image/%s", driver_name);
  r->root_fd = open (r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  r->lock_fd = open (r->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (r->root_fd < 0 || r->lock_fd < 0)
    {
      gr_make_error (err, errno, "open graph root");
      goto fail;
    }
  r->image_fd = openat (r->root_fd, image_rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (r->image_fd < 0)
    {
      gr_make_error (err, errno, "no image store `%s`", image_rel);
      goto fail;
    }
  *out = r;
  return 0;

fail:
  gr_error_wrap (err, "graph root `%s` (%s)", resolved, driver_name);
  gr_graphroot_free (r);
  return -1;
}

int
gr_graphroot_check_writable (struct gr_graphroot *root, gr_error_t *err)
{
  if (root->readonly)
    return gr_make_error (err, EROFS, "graph root `%s` (%s) was opened read-only", root->root,
                          root->driver_name);
  return 0;
}

void
gr_graphroot_free (struct gr_graphroot *root)
{
  if (root == NULL)
    return;
  assert (root->pending == NULL);
  gr_driver_free (root->driver);
  if (root->lock_fd >= 0)
    close (root->lock_fd);
  if (root->image_fd >= 0)
    close (root->image_fd);
  if (root->root_fd >= 0)
    close (root->root_fd);
  for (size_t i = 0; i < root->n_orphans; i++)
    free (root->orphans[i]);
  free (root->orphans);
  pthread_mutex_destroy (&root->lock);
  pthread_cond_destroy (&root->cond);
  free (root->root);
  free (root->driver_name);
  free (root);
}

void
gr_graphroot_lock (struct gr_graphroot *root)
{
  pthread_mutex_lock (&root->lock);
  while (flock (root->lock_fd, LOCK_EX) < 0 && errno == EINTR)
    ;
}

void
gr_graphroot_unlock (struct gr_graphroot *root)
{
  flock (root->lock_fd, LOCK_UN);
  pthread_mutex_unlock (&root->lock);
}

/* ---------- is a dockerd running on this root? ---------- */

/* The data root named by a daemon.json (NULL if none).  */
static char *
config_data_root (const char *path)
{
  json_error_t jerr;
  json_t *j = json_load_file (path, 0, &jerr);
  if (j == NULL)
    return NULL;
  const char *s = json_string_value (json_object_get (j, "data-root"));
  if (s == NULL)
    s = json_string_value (json_object_get (j, "graph"));
  char *ret = s ? xstrdup (s) : NULL;
  json_decref (j);
  return ret;
}

/* PATH as seen by process PID: relative paths from its cwd, absolute
   ones inside its root.  */
static char *
resolve_for_pid (pid_t pid, const char *path)
{
  char buf[PATH_MAX];
  cleanup_free char *full = NULL;
  if (path[0] == '/')
    full = xasprintf ("/proc/%d/root%s", (int)pid, path);
  else
    full = xasprintf ("/proc/%d/cwd/%s", (int)pid, path);
  if (realpath (full, buf) == NULL)
    return xstrdup (path);
  return xstrdup (buf);
}

/* The data root of the dockerd PID, from its command line.  */
static char *
dockerd_data_root (pid_t pid)
{
  cleanup_free char *path = xasprintf ("/proc/%d/cmdline", (int)pid);
  cleanup_free char *cmdline = NULL;
  size_t len = 0;
  if (gr_read_file_at (&cmdline, &len, AT_FDCWD, path, 1 << 20, NULL) < 0)
    return NULL;
  cleanup_free char *data_root = NULL;
  cleanup_free char *config_file = NULL;
  for (size_t i = 0; i < len;)
    {
      const char *arg = cmdline + i;
      size_t alen = strlen (arg);
      const char *next = i + alen + 1 < len ? cmdline + i + alen + 1 : NULL;
      const char *val = NULL;
      bool is_root = false, is_config = false;
      static const char *const root_flags[] = { "--data-root", "-g", "--graph" };
      for (size_t k = 0; k < 3; k++)
        {
          size_t fl = strlen (root_flags[k]);
          if (strcmp (arg, root_flags[k]) == 0)
            is_root = true, val = next;
          else if (strncmp (arg, root_flags[k], fl) == 0 && arg[fl] == '=')
            is_root = true, val = arg + fl + 1;
          else if (k == 1 && strncmp (arg, "-g", 2) == 0 && arg[2] != '-' && arg[2] != '\0')
            is_root = true, val = arg + 2;
        }
      if (strcmp (arg, "--config-file") == 0)
        is_config = true, val = next;
      else if (strncmp (arg, "--config-file=", 14) == 0)
        is_config = true, val = arg + 14;
      if (val && is_root)
        {
          free (data_root);
          data_root = xstrdup (val);
        }
      if (val && is_config)
        {
          free (config_file);
          config_file = xstrdup (val);
        }
      i += alen + 1;
    }
  if (data_root == NULL)
    {
      cleanup_free char *cfg = resolve_for_pid (pid, config_file ? config_file : "/etc/docker/daemon.json");
      data_root = config_data_root (cfg);
    }
  return resolve_for_pid (pid, data_root ? data_root : "/var/lib/docker");
}

int
gr_graphroot_dockerd_running (pid_t *pid_out, const char *root_dir, gr_error_t *err)
{
  char want[PATH_MAX];
  if (realpath (root_dir, want) == NULL)
    {
      if (errno == ENOENT)
        return 0; /* no root yet: nobody runs on it */
      return gr_make_error (err, errno, "graph root `%s`", root_dir);
    }
  cleanup_dir DIR *proc = opendir ("/proc");
  if (proc == NULL)
    return gr_make_error (err, errno, "open /proc");
  for (struct dirent *de; (de = readdir (proc));)
    {
      if (!isdigit ((unsigned char)de->d_name[0]))
        continue;
      pid_t pid = (pid_t)atol (de->d_name);
      cleanup_free char *comm_path = xasprintf ("/proc/%d/comm", (int)pid);
      cleanup_free char *comm = NULL;
      if (gr_read_file_at (&comm, NULL, AT_FDCWD, comm_path, 4096, NULL) < 0)
        continue;
      comm[strcspn (comm, "\n")] = '\0';
      if (strcmp (comm, "dockerd") != 0)
        continue;
      cleanup_free char *data_root = dockerd_data_root (pid);
      if (data_root && strcmp (data_root, want) == 0)
        {
          if (pid_out)
            *pid_out = pid;
          return 1;
        }
    }
  return 0;
}

#include "config.h"

#include "layerstore.h"

#include "digest.h"
#include "fsutil.h"
#include "graphroot-internal.h"
#include "tarsplit.h"

#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/stat.h>

#define STAGE_CHUNK (256 * 1024)
#define STAGE_PIPE_SIZE (1024 * 1024)

/* ---------- chain IDs and lookups ---------- */

int
gr_layer_chain_id (char out[GR_DIGEST_LEN + 1], const char *parent_chain_id, const char *diff_id,
                   gr_error_t *err)
{
  if (!gr_digest_valid (diff_id))
    return gr_make_error (err, EINVAL, "invalid diffID `%s`", diff_id ? diff_id : "");
  if (parent_chain_id == NULL || parent_chain_id[0] == '\0')
    {
      memcpy (out, diff_id, GR_DIGEST_LEN + 1);
      return 0;
    }
  if (!gr_digest_valid (parent_chain_id))
    return gr_make_error (err, EINVAL, "invalid chainID `%s`", parent_chain_id);
  cleanup_free char *s = xasprintf ("%s %s", parent_chain_id, diff_id);
  char hex[GR_SHA256_HEX_LEN + 1];
  gr_sha256_hex (s, strlen (s), hex);
  snprintf (out, GR_DIGEST_LEN + 1, "sha256:%s", hex);
  return 0;
}

static int
read_small (char *out, size_t outlen, int dirfd, const char *name, gr_error_t *err)
{
  cleanup_free char *data = NULL;
  size_t len = 0;
  if (gr_read_file_at (&data, &len, dirfd, name, 4096, err) < 0)
    return -1;
  if (len >= outlen)
    return gr_make_error (err, EINVAL, "`%s` is too long", name);
  memcpy (out, data, len + 1);
  return 0;
}

int
gr_layerstore_get (struct gr_graphroot *root, struct gr_layer_info *out, const char *chain_id,
                   gr_error_t *err)
{
  if (!gr_digest_valid (chain_id))
    return gr_make_error (err, EINVAL, "invalid chainID `%s`", chain_id ? chain_id : "");
  cleanup_free char *rel = xasprintf ("layerdb/sha256/%s", chain_id + 7);
  cleanup_close int dfd = openat (root->image_fd, rel, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dfd < 0)
    return gr_make_error (err, errno, "layer %s", chain_id);
  memset (out, 0, sizeof (*out));
  memcpy (out->chain_id, chain_id, GR_DIGEST_LEN + 1);
  char size[32];
  if (read_small (out->diff_id, sizeof (out->diff_id), dfd, "diff", err) < 0
      || read_small (out->cache_id, sizeof (out->cache_id), dfd, "cache-id", err) < 0)
    return gr_error_wrap (err, "layer %s", chain_id);
  if (!gr_digest_valid (out->diff_id) || gr_id_validate (out->cache_id, NULL) < 0)
    return gr_make_error (err, EINVAL, "layer %s: invalid diff or cache-id", chain_id);
  if (read_small (out->parent, sizeof (out->parent), dfd, "parent", NULL) < 0)
    out->parent[0] = '\0';
  else if (!gr_digest_valid (out->parent))
    return gr_make_error (err, EINVAL, "layer %s: invalid parent `%s`", chain_id, out->parent);
  out->size = -1;
  if (read_small (size, sizeof (size), dfd, "size", NULL) == 0)
    out->size = strtoll (size, NULL, 10);
  return 0;
}

bool
gr_layerstore_has (struct gr_graphroot *root, const char *chain_id)
{
  struct gr_layer_info info;
  if (gr_layerstore_get (root, &info, chain_id, NULL) < 0)
    return false;
  /* A read-only root has no driver: its layerdb is all there is to ask.  */
  return root->driver == NULL || root->driver->ops->exists (root->driver, info.cache_id);
}

int
gr_layerstore_find_by_diff_id (struct gr_graphroot *root, char **chain_id_out, const char *diff_id,
                               gr_error_t *err)
{
  if (!gr_digest_valid (diff_id))
    return gr_make_error (err, EINVAL, "invalid diffID `%s`", diff_id ? diff_id : "");
  cleanup_close int dfd = gr_open_dir_at (root->image_fd, "layerdb/sha256", err);
  if (dfd < 0)
    return -1;
  cleanup_dir DIR *d = gr_dir_open_fd (dfd, err);
  if (d == NULL)
    return -1;
  for (struct dirent *de; (de = readdir (d));)
    {
      if (!gr_hex64_valid (de->d_name))
        continue;
      cleanup_free char *rel = xasprintf ("%s/diff", de->d_name);
      char diff[GR_DIGEST_LEN + 2];
      if (read_small (diff, sizeof (diff), dfd, rel, NULL) < 0 || strcmp (diff, diff_id) != 0)
        continue;
      cleanup_free char *chain = xasprintf ("sha256:%s", de->d_name);
      if (!gr_layerstore_has (root, chain))
        continue;
      *chain_id_out = gr_steal (chain);
      return 1;
    }
  return 0;
}

/* ---------- the layer writer ---------- */

enum writer_state
{
  W_WRITING,
  W_COMMITTED,
  W_FAILED,
};

struct gr_layer_writer
{
  struct gr_graphroot *root;
  struct gr_layer_writer *next; /* in root->pending */
  enum writer_state state;
  bool parent_was_pending;

  char chain_id[GR_DIGEST_LEN + 1];
  char diff_id[GR_DIGEST_LEN + 1];
  char parent[GR_DIGEST_LEN + 1]; /* "" for a base layer */
  char cache_id[GR_SHA256_HEX_LEN + 1];
  char parent_cache[GR_DIGEST_LEN + 1]; /* "" for a base layer */
  bool layer_created;

  char *set_name; /* layerdb/tmp/<set_name> */
  int set_fd;
  int ts_fd;
  struct gr_tarsplit *ts;
  struct gr_sha256 *sha;

  /* Two stages behind gr_layer_writer_write, each a thread fed by a pipe,
     so that the caller (decompressing), the hashing and tar-split, and the
     extraction run on different CPUs:
       write() -> split_w | split thread: diffID, tar-split -> pipe_w | apply thread */
  int split_w;
  int split_r;
  pthread_t split_thread;
  bool split_running;
  int pipe_w;
  int pipe_r;
  pthread_t thread;
  bool thread_running;
  /* Results of the two threads.  */
  pthread_mutex_t mu;
  bool split_done;
  int split_status;
  gr_error_t split_err;
  bool apply_done;
  int apply_status;
  gr_error_t apply_err;
  int64_t apply_size;
};

static struct gr_layer_writer *
pending_find (struct gr_graphroot *root, const char *chain_id)
{
  for (struct gr_layer_writer *w = root->pending; w; w = w->next)
    if (strcmp (w->chain_id, chain_id) == 0)
      return w;
  return NULL;
}

static void
pending_remove (struct gr_layer_writer *w)
{
  struct gr_graphroot *root = w->root;
  pthread_mutex_lock (&root->lock);
  for (struct gr_layer_writer **p = &root->pending; *p; p = &(*p)->next)
    if (*p == w)
      {
        *p = w->next;
        break;
      }
  pthread_cond_broadcast (&root->cond);
  pthread_mutex_unlock (&root->lock);
}

/* Read FD to its end, dropping the data (a failed stage keeps the one
   before it from blocking).  */
static void
drain (int fd)
{
  char buf[65536];
  for (;;)
    {
      ssize_t n = read (fd, buf, sizeof (buf));
      if (n == 0 || (n < 0 && errno != EINTR))
        break;
    }
}

static void *
apply_thread (void *arg)
{
  struct gr_layer_writer *w = arg;
  struct gr_driver *d = w->root->driver;
  int64_t size = 0;
  gr_error_t e = NULL;
  int r = d->ops->apply_diff (d, &size, w->cache_id, w->parent_cache[0] ? w->parent_cache : NULL, w->pipe_r,
                              &e);
  pthread_mutex_lock (&w->mu);
  w->apply_status = r;
  w->apply_err = e;
  w->apply_size = size;
  w->apply_done = true;
  pthread_mutex_unlock (&w->mu);
  /* Keep the writer from blocking (or dying of SIGPIPE): drain to EOF.  */
  drain (w->pipe_r);
  close (w->pipe_r);
  w->pipe_r = -1;
  return NULL;
}

static void *
split_thread (void *arg)
{
  struct gr_layer_writer *w = arg;
  cleanup_free char *buf = xmalloc (STAGE_CHUNK);
  gr_error_t e = NULL;
  int r = 0;
  for (;;)
    {
      ssize_t n = read (w->split_r, buf, STAGE_CHUNK);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          r = gr_make_error (&e, errno, "layer %s: read", w->diff_id);
          break;
        }
      if (n == 0)
        break;
      /* The extraction first, so that it works while this one hashes (a
         layer that fails here is dropped whole).  */
      if (gr_write_all (w->pipe_w, buf, (size_t)n, &e) < 0)
        {
          r = gr_error_wrap (&e, "layer %s: feed extraction", w->diff_id);
          break;
        }
      gr_sha256_update (w->sha, buf, (size_t)n);
      if (gr_tarsplit_feed (w->ts, buf, (size_t)n, &e) < 0)
        {
          r = gr_error_wrap (&e, "layer %s", w->diff_id);
          break;
        }
    }
  /* The extraction ends with the input (or sees it cut short).  */
  close (w->pipe_w);
  w->pipe_w = -1;
  pthread_mutex_lock (&w->mu);
  w->split_status = r;
  w->split_err = e;
  w->split_done = true;
  pthread_mutex_unlock (&w->mu);
  if (r < 0)
    drain (w->split_r);
  close (w->split_r);
  w->split_r = -1;
  return NULL;
}

/* A pipe for one stage, made large enough (1 MiB where allowed) that the
   stages don't wait on each other at every 64 KiB.  */
static int
stage_pipe (int *rd, int *wr, gr_error_t *err)
{
  int p[2];
  if (pipe2 (p, O_CLOEXEC) < 0)
    return gr_make_error (err, errno, "pipe");
  (void)fcntl (p[1], F_SETPIPE_SZ, STAGE_PIPE_SIZE);
  *rd = p[0];
  *wr = p[1];
  return 0;
}

/* Create the write set dir layerdb/tmp/write-set-XXXXXXXX.  */
static int
make_write_set (struct gr_layer_writer *w, gr_error_t *err)
{
  cleanup_close int tmp = gr_open_dir_at (w->root->image_fd, "layerdb/tmp", err);
  if (tmp < 0)
    return -1;
  for (int tries = 0; tries < 100; tries++)
    {
      char rnd[GR_SHA256_HEX_LEN + 1];
      if (gr_random_id (rnd, err) < 0)
        return -1;
      rnd[12] = '\0';
      cleanup_free char *name = xasprintf ("write-set-%s", rnd);
      if (mkdirat (tmp, name, 0700) < 0)
        {
          if (errno == EEXIST)
            continue;
          return gr_make_error (err, errno, "mkdir layerdb/tmp/%s", name);
        }
      w->set_fd = gr_open_dir_at (tmp, name, err);
      if (w->set_fd < 0)
        return -1;
      w->set_name = gr_steal (name);
      return 0;
    }
  return gr_make_error (err, EEXIST, "cannot create a write set in layerdb/tmp");
}

static int
write_set_file (struct gr_layer_writer *w, const char *name, const char *data, gr_error_t *err)
{
  cleanup_close int fd = openat (w->set_fd, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0)
    return gr_make_error (err, errno, "create `%s`", name);
  if (gr_write_all (fd, data, strlen (data), err) < 0)
    return gr_error_wrap (err, "write `%s`", name);
  if (fchmod (fd, 0644) < 0 || fsync (fd) < 0)
    return gr_make_error (err, errno, "write `%s`", name);
  return 0;
}

/* Resolve the parent's cache ID (under root->lock).  */
static int
resolve_parent (struct gr_layer_writer *w, gr_error_t *err)
{
  struct gr_graphroot *root = w->root;
  bool vfs = strcmp (root->driver->ops->name, "vfs") == 0;
  for (;;)
    {
      struct gr_layer_info info;
      if (gr_layerstore_get (root, &info, w->parent, NULL) == 0)
        {
          if (!root->driver->ops->exists (root->driver, info.cache_id))
            return gr_make_error (err, ENOENT, "parent layer %s: driver layer %s is missing", w->parent,
                                  info.cache_id);
          snprintf (w->parent_cache, sizeof (w->parent_cache), "%s", info.cache_id);
          return 0;
        }
      struct gr_layer_writer *p = pending_find (root, w->parent);
      if (p == NULL)
        return gr_make_error (err, ENOENT, "parent layer %s does not exist", w->parent);
      if (!vfs)
        {
          /* The child can be created on the parent's layer right away.  */
          snprintf (w->parent_cache, sizeof (w->parent_cache), "%s", p->cache_id);
          w->parent_was_pending = true;
          return 0;
        }
      /* vfs copies the parent's files at create time: wait for it.  */
      pthread_cond_wait (&root->cond, &root->lock);
    }
}

int
gr_layer_writer_new (struct gr_layer_writer **out, struct gr_graphroot *root, const char *parent_chain_id,
                     const char *diff_id, gr_error_t *err)
{
  if (gr_graphroot_check_writable (root, err) < 0)
    return -1;
  struct gr_layer_writer *w = xzalloc (sizeof (*w));
  w->root = root;
  w->set_fd = w->ts_fd = w->pipe_r = w->pipe_w = w->split_r = w->split_w = -1;
  w->state = W_WRITING;
  pthread_mutex_init (&w->mu, NULL);
  if (gr_layer_chain_id (w->chain_id, parent_chain_id, diff_id, err) < 0)
    goto fail_early;
  snprintf (w->diff_id, sizeof (w->diff_id), "%s", diff_id);
  snprintf (w->parent, sizeof (w->parent), "%s", parent_chain_id ? parent_chain_id : "");
  if (gr_random_id (w->cache_id, err) < 0)
    goto fail_early;

  if (w->parent[0])
    {
      pthread_mutex_lock (&root->lock);
      int r = resolve_parent (w, err);
      pthread_mutex_unlock (&root->lock);
      if (r < 0)
        goto fail_early;
    }

  /* The write set first, naming the cache ID, so that an interrupted
     writer's backend layer can be found and removed later.  */
  if (make_write_set (w, err) < 0 || write_set_file (w, "cache-id", w->cache_id, err) < 0)
    goto fail;
  if (gr_fsync_dir (w->set_fd, err) < 0)
    goto fail;

  struct gr_driver *d = root->driver;
  if (d->ops->create (d, w->cache_id, w->parent_cache[0] ? w->parent_cache : NULL, false, err) < 0)
    {
      gr_error_wrap (err, "create layer %s", w->cache_id);
      goto fail;
    }
  w->layer_created = true;

  w->ts_fd = openat (w->set_fd, "tar-split.json.gz", O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (w->ts_fd < 0)
    {
      gr_make_error (err, errno, "create tar-split.json.gz");
      goto fail;
    }
  if (gr_tarsplit_new (&w->ts, w->ts_fd, err) < 0)
    goto fail;
  w->sha = gr_sha256_new ();

  if (stage_pipe (&w->pipe_r, &w->pipe_w, err) < 0 || stage_pipe (&w->split_r, &w->split_w, err) < 0)
    goto fail;
  int e = pthread_create (&w->thread, NULL, apply_thread, w);
  if (e != 0)
    {
      gr_make_error (err, e, "pthread_create");
      goto fail;
    }
  w->thread_running = true;
  e = pthread_create (&w->split_thread, NULL, split_thread, w);
  if (e != 0)
    {
      gr_make_error (err, e, "pthread_create");
      goto fail;
    }
  w->split_running = true;

  pthread_mutex_lock (&root->lock);
  w->next = root->pending;
  root->pending = w;
  pthread_mutex_unlock (&root->lock);
  *out = w;
  return 0;

fail:
  gr_error_wrap (err, "layer %s", w->diff_id);
  gr_layer_writer_free (w);
  return -1;
fail_early:
  pthread_mutex_destroy (&w->mu);
  free (w);
  return -1;
}

const char *
gr_layer_writer_chain_id (const struct gr_layer_writer *w)
{
  return w->chain_id;
}

/* End the input and wait for both stages (the split stage ends the
   extraction's input).  */
static void
join_thread (struct gr_layer_writer *w)
{
  if (w->split_w >= 0)
    {
      close (w->split_w);
      w->split_w = -1;
    }
  if (w->split_running)
    {
      pthread_join (w->split_thread, NULL);
      w->split_running = false;
    }
  else if (w->pipe_w >= 0)
    {
      /* The split stage never started: end the extraction's input here.  */
      close (w->pipe_w);
      w->pipe_w = -1;
    }
  if (w->thread_running)
    {
      pthread_join (w->thread, NULL);
      w->thread_running = false;
    }
}

/* The error of a stage that has failed already: the split stage's (a tar
   that is not one) first, else the extraction's.  */
static int
stage_error (struct gr_layer_writer *w, gr_error_t *err)
{
  int r = 0;
  pthread_mutex_lock (&w->mu);
  if (w->split_done && w->split_status < 0)
    r = gr_make_error (err, gr_error_status (&w->split_err), "%s", gr_error_msg (&w->split_err));
  else if (w->apply_done && w->apply_status < 0)
    r = gr_make_error (err, gr_error_status (&w->apply_err), "extract layer %s: %s", w->diff_id,
                       gr_error_msg (&w->apply_err));
  pthread_mutex_unlock (&w->mu);
  return r;
}

int
gr_layer_writer_write (struct gr_layer_writer *w, const void *buf, size_t len, gr_error_t *err)
{
  if (w->state != W_WRITING)
    return gr_make_error (err, EINVAL, "layer %s: writer is not open", w->diff_id);
  if (stage_error (w, NULL) < 0)
    {
      /* Let both stages see all that came so far, so that the error told
         does not depend on which stage got there first.  */
      w->state = W_FAILED;
      join_thread (w);
      return stage_error (w, err);
    }
  if (gr_write_all (w->split_w, buf, len, err) < 0)
    {
      w->state = W_FAILED;
      return gr_error_wrap (err, "layer %s: feed tar-split", w->diff_id);
    }
  return 0;
}

/* Wait until the parent writer (if it was pending) is committed; check
   it was committed with the cache ID this layer was created on.  */
static int
wait_parent (struct gr_layer_writer *w, gr_error_t *err)
{
  if (w->parent[0] == '\0')
    return 0;
  struct gr_graphroot *root = w->root;
  int ret = 0;
  pthread_mutex_lock (&root->lock);
  for (;;)
    {
      struct gr_layer_info info;
      if (gr_layerstore_get (root, &info, w->parent, NULL) == 0)
        {
          if (strcmp (info.cache_id, w->parent_cache) != 0)
            ret = gr_make_error (err, EAGAIN,
                                 "parent layer %s was registered concurrently with another "
                                 "driver layer; pull again",
                                 w->parent);
          break;
        }
      if (pending_find (root, w->parent) == NULL)
        {
          ret = gr_make_error (err, ENOENT, "parent layer %s was not committed", w->parent);
          break;
        }
      pthread_cond_wait (&root->cond, &root->lock);
    }
  pthread_mutex_unlock (&root->lock);
  return ret;
}

int
gr_layer_writer_commit (struct gr_layer_writer *w, char **chain_id_out, gr_error_t *err)
{
  struct gr_graphroot *root = w->root;
  struct gr_driver *d = root->driver;
  char hex[GR_SHA256_HEX_LEN + 1];
  char buf[64];

  if (w->state != W_WRITING)
    return gr_make_error (err, EINVAL, "layer %s: writer is not open", w->diff_id);
  w->state = W_FAILED; /* until it succeeds */
  join_thread (w);
  if (stage_error (w, err) < 0)
    return -1;
  if (gr_tarsplit_finish (w->ts, err) < 0)
    return gr_error_wrap (err, "layer %s", w->diff_id);
  gr_sha256_final (w->sha, hex);
  w->sha = NULL;
  if (strcmp (w->diff_id + 7, hex) != 0)
    return gr_make_error (err, EINVAL, "layer %s: the content has diffID sha256:%s", w->diff_id, hex);

  /* dockerd's ApplyDiff size: directory.Size of the applied dir for aufs
     and overlay2 (native diff), the tar's size fields summed by
     archive.UnpackLayer for vfs and overlay2 with naive diff.  */
  bool tar_size = strcmp (d->ops->name, "vfs") == 0
                  || (strcmp (d->ops->name, "overlay2") == 0 && !gr_overlay2_native_diff ());
  int64_t size = tar_size ? gr_tarsplit_unpacked_size (w->ts) : w->apply_size;
  snprintf (buf, sizeof (buf), "%" PRId64, size);
  if (fsync (w->ts_fd) < 0)
    return gr_make_error (err, errno, "layer %s: fsync tar-split.json.gz", w->diff_id);
  if (write_set_file (w, "diff", w->diff_id, err) < 0 || write_set_file (w, "size", buf, err) < 0
      || (w->parent[0] && write_set_file (w, "parent", w->parent, err) < 0)
      || gr_fsync_dir (w->set_fd, err) < 0)
    return gr_error_wrap (err, "layer %s", w->diff_id);

  if (wait_parent (w, err) < 0)
    return gr_error_wrap (err, "layer %s", w->diff_id);

  /* The layer's files must be on disk before it is registered.  */
  if (syncfs (d->home_fd) < 0)
    return gr_make_error (err, errno, "layer %s: syncfs", w->diff_id);

  int ret = 0;
  cleanup_close int tmp = -1, sha = -1;
  gr_graphroot_lock (root);
  tmp = gr_open_dir_at (root->image_fd, "layerdb/tmp", err);
  sha = tmp < 0 ? -1 : gr_open_dir_at (root->image_fd, "layerdb/sha256", err);
  if (sha < 0)
    ret = -1;
  else if (gr_layerstore_has (root, w->chain_id))
    {
      /* Registered meanwhile: keep that one, drop ours (on free).  */
    }
  else
    {
      /* A broken leftover under the same name (no valid files): replace.  */
      if (faccessat (sha, w->chain_id + 7, F_OK, AT_SYMLINK_NOFOLLOW) == 0)
        ret = gr_rm_rf_at (sha, w->chain_id + 7, err);
      if (ret == 0 && renameat (tmp, w->set_name, sha, w->chain_id + 7) < 0)
        ret = gr_make_error (err, errno, "rename layerdb/tmp/%s to layerdb/sha256/%s", w->set_name,
                             w->chain_id + 7);
      if (ret == 0)
        ret = gr_fsync_dir (sha, err);
      if (ret == 0 && gr_fsync_dir (tmp, err) == 0)
        {
          free (w->set_name);
          w->set_name = NULL;
          w->layer_created = false; /* it belongs to the layer store now */
        }
    }
  if (ret == 0)
    w->state = W_COMMITTED;
  gr_graphroot_unlock (root);
  if (ret < 0)
    return gr_error_wrap (err, "layer %s", w->diff_id);
  if (chain_id_out)
    *chain_id_out = xstrdup (w->chain_id);
  return 0;
}

/* Remove the orphans that can go now (their children are gone), keeping
   those that still can't.  Passes until one removes nothing: an orphan
   can be listed before its own orphaned child.  */
static void
retry_orphans (struct gr_graphroot *root)
{
  struct gr_driver *d = root->driver;
  pthread_mutex_lock (&root->lock);
  for (bool progress = true; progress;)
    {
      progress = false;
      size_t kept = 0;
      for (size_t i = 0; i < root->n_orphans; i++)
        {
          gr_error_t e = NULL;
          if (d->ops->remove (d, root->orphans[i], &e) < 0)
            {
              gr_error_release (&e);
              root->orphans[kept++] = root->orphans[i];
            }
          else
            {
              free (root->orphans[i]);
              progress = true;
            }
        }
      root->n_orphans = kept;
    }
  pthread_mutex_unlock (&root->lock);
}

void
gr_layer_writer_free (struct gr_layer_writer *w)
{
  if (w == NULL)
    return;
  join_thread (w);
  if (w->pipe_r >= 0)
    close (w->pipe_r);
  if (w->split_r >= 0)
    close (w->split_r);
  struct gr_driver *d = w->root->driver;
  gr_error_t e = NULL;
  /* Not registered (aborted, failed, or a duplicate): drop the backend
     layer, then the write set that names it.  */
  if (w->layer_created && d->ops->remove (d, w->cache_id, &e) < 0)
    {
      /* A child layer of an aborted sibling writer still stands on it
         (the backend refuses to break it): removed when that one goes.  */
      gr_error_release (&e);
      pthread_mutex_lock (&w->root->lock);
      w->root->orphans = xrealloc (w->root->orphans, (w->root->n_orphans + 1) * sizeof (char *));
      w->root->orphans[w->root->n_orphans++] = xstrdup (w->cache_id);
      pthread_mutex_unlock (&w->root->lock);
    }
  if (w->set_name)
    {
      cleanup_close int tmp = gr_open_dir_at (w->root->image_fd, "layerdb/tmp", NULL);
      if (tmp >= 0 && gr_rm_rf_at (tmp, w->set_name, &e) < 0)
        gr_error_release (&e);
    }
  pending_remove (w);
  retry_orphans (w->root);
  gr_tarsplit_free (w->ts);
  gr_sha256_free (w->sha);
  if (w->ts_fd >= 0)
    close (w->ts_fd);
  if (w->set_fd >= 0)
    close (w->set_fd);
  gr_error_release (&w->apply_err);
  gr_error_release (&w->split_err);
  pthread_mutex_destroy (&w->mu);
  free (w->set_name);
  free (w);
}

int
gr_layer_register_fd (struct gr_graphroot *root, char **chain_id_out, const char *parent_chain_id,
                      const char *diff_id, int tar_fd, gr_error_t *err)
{
  struct gr_layer_writer *w = NULL;
  if (gr_layer_writer_new (&w, root, parent_chain_id, diff_id, err) < 0)
    return -1;
  cleanup_free char *buf = xmalloc (1 << 20);
  int ret = 0;
  for (;;)
    {
      ssize_t n = read (tar_fd, buf, 1 << 20);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          ret = gr_make_error (err, errno, "read layer %s", diff_id);
          break;
        }
      if (n == 0)
        break;
      if ((ret = gr_layer_writer_write (w, buf, (size_t)n, err)) < 0)
        break;
    }
  if (ret == 0)
    ret = gr_layer_writer_commit (w, chain_id_out, err);
  gr_layer_writer_free (w);
  return ret;
}

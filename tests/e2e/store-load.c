/* store-load: write the images of an extracted `docker save` archive into
   a (stopped) dockerd graph root through the store API, as a pull would:
   one thread per layer (children created on their still-pending parents),
   streaming each layer.tar through gr_layer_writer in small pieces, then
   the image config, distribution metadata and references.

   usage: store-load ROOT DRIVER SAVE_DIR [MANIFEST_DIGEST]

   DRIVER: overlay2, vfs, aufs, aufs-graphdriver, or NAME=BACKEND for a
   graphdriver plugin called NAME (e.g. aufs-graphdriver-e2e42=aufs).

   MANIFEST_DIGEST (optional) is recorded as the `name@digest` reference
   of every tag and as the source of every layer (a stand-in for what a
   registry would give).  */

#include "config.h"

#include "digest.h"
#include "distmeta.h"
#include "fsutil.h"
#include "graphroot.h"
#include "imagestore.h"
#include "layerstore.h"
#include "refstore.h"

#include <fcntl.h>
#include <jansson.h>
#include <string.h>

struct job
{
  struct gr_graphroot *root;
  int dirfd;
  const char *tar;
  char parent[GR_DIGEST_LEN + 1];
  char diff_id[GR_DIGEST_LEN + 1];
  char chain[GR_DIGEST_LEN + 1];
  struct gr_layer_writer *w;
  gr_error_t err;
  int ret;
};

static void *
run_job (void *arg)
{
  struct job *j = arg;
  j->ret = -1;
  cleanup_close int fd = openat (j->dirfd, j->tar, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    {
      gr_make_error (&j->err, errno, "open %s", j->tar);
      return NULL;
    }
  /* odd-sized pieces, as a decompressor would hand them out */
  static const size_t sizes[] = { 1, 511, 4096, 65536 + 3, 1 << 20 };
  cleanup_free char *buf = xmalloc (1 << 20);
  size_t k = 0;
  for (;;)
    {
      ssize_t n = read (fd, buf, sizes[k++ % 5]);
      if (n < 0)
        {
          gr_make_error (&j->err, errno, "read %s", j->tar);
          return NULL;
        }
      if (n == 0)
        break;
      if (gr_layer_writer_write (j->w, buf, (size_t)n, &j->err) < 0)
        return NULL;
    }
  if (gr_layer_writer_commit (j->w, NULL, &j->err) < 0)
    return NULL;
  j->ret = 0;
  return NULL;
}

static int
load_image (struct gr_graphroot *root, int dirfd, json_t *m, const char *manifest_digest, gr_error_t *err)
{
  const char *cfg_name = json_string_value (json_object_get (m, "Config"));
  json_t *layers = json_object_get (m, "Layers");
  cleanup_free char *config = NULL;
  size_t config_len = 0;
  if (cfg_name == NULL || gr_read_file_at (&config, &config_len, dirfd, cfg_name, 0, err) < 0)
    return gr_make_error (err, EINVAL, "bad manifest entry");
  json_t *cfg = json_loadb (config, config_len, 0, NULL);
  json_t *diff_ids = json_object_get (json_object_get (cfg, "rootfs"), "diff_ids");
  size_t n = json_array_size (layers);
  if (n != json_array_size (diff_ids))
    return gr_make_error (err, EINVAL, "%zu layers, %zu diff_ids", n, json_array_size (diff_ids));
  struct job *jobs = xzalloc (n * sizeof (*jobs));
  pthread_t *threads = xzalloc (n * sizeof (*threads));
  bool *threaded = xzalloc (n * sizeof (*threaded));
  bool vfs = strcmp (root->driver->ops->name, "vfs") == 0;
  char parent[GR_DIGEST_LEN + 1] = "";
  int ret = 0;
  size_t started = 0;
  for (size_t i = 0; i < n; i++)
    {
      struct job *j = &jobs[i];
      j->root = root;
      j->dirfd = dirfd;
      j->tar = json_string_value (json_array_get (layers, i));
      snprintf (j->diff_id, sizeof (j->diff_id), "%s", json_string_value (json_array_get (diff_ids, i)));
      snprintf (j->parent, sizeof (j->parent), "%s", parent);
      if (gr_layer_chain_id (j->chain, parent[0] ? parent : NULL, j->diff_id, err) < 0)
        {
          ret = -1;
          break;
        }
      memcpy (parent, j->chain, sizeof (parent));
      if (gr_layerstore_has (root, j->chain))
        continue;
      if (gr_layer_writer_new (&j->w, root, j->parent[0] ? j->parent : NULL, j->diff_id, err) < 0)
        {
          ret = -1;
          break;
        }
      if (vfs)
        run_job (j); /* vfs copies the parent at create: one after the other */
      else
        {
          pthread_create (&threads[i], NULL, run_job, j);
          threaded[i] = true;
        }
      started = i + 1;
    }
  for (size_t i = 0; i < started; i++)
    {
      if (threaded[i])
        pthread_join (threads[i], NULL);
      if (jobs[i].w && jobs[i].ret < 0 && ret == 0)
        {
          gr_make_error (err, gr_error_status (&jobs[i].err), "%s", gr_error_msg (&jobs[i].err));
          ret = -1;
        }
      gr_error_release (&jobs[i].err);
      gr_layer_writer_free (jobs[i].w);
    }
  free (threaded);
  free (jobs);
  free (threads);
  char id[GR_DIGEST_LEN + 1];
  if (ret == 0)
    ret = gr_imagestore_put (root, id, config, config_len, err);
  size_t i;
  json_t *v;
  json_array_foreach (layers, i, v) if (ret == 0 && manifest_digest)
  {
    /* a stand-in blob digest per layer: sha256 of "blob <diffID>" */
    const char *d = json_string_value (json_array_get (diff_ids, i));
    cleanup_free char *s = xasprintf ("blob %s", d);
    char hex[GR_SHA256_HEX_LEN + 1];
    gr_sha256_hex (s, strlen (s), hex);
    cleanup_free char *blob = xasprintf ("sha256:%s", hex);
    ret = gr_distmeta_add (root, blob, d, "127.0.0.1:5000/e2e/store", err);
  }
  json_array_foreach (json_object_get (m, "RepoTags"), i, v) if (ret == 0)
  {
    cleanup_free char *ref = xstrdup (json_string_value (v));
    char *colon = strrchr (ref, ':');
    if (colon && strchr (colon, '/') == NULL)
      *colon++ = '\0';
    else
      colon = (char *)"latest";
    ret = gr_refstore_add (root, ref, colon, manifest_digest, id, err);
  }
  json_decref (cfg);
  if (ret == 0)
    printf ("%s\n", id);
  return ret;
}

/* DRIVER is a dockerd driver name, or NAME=BACKEND for a plugin named NAME.  */
static int
open_root (struct gr_graphroot **root, const char *dir, const char *driver, gr_error_t *err)
{
  const char *eq = strchr (driver, '=');
  if (eq == NULL)
    return gr_graphroot_open (root, dir, driver, err);
  cleanup_free char *name = xstrndup (driver, (size_t)(eq - driver));
  return gr_graphroot_open_with (root, dir, name, eq + 1, NULL, err);
}

int
main (int argc, char **argv)
{
  gr_error_t err = NULL;
  if (argc < 4)
    {
      fprintf (stderr, "usage: %s ROOT DRIVER SAVE_DIR [MANIFEST_DIGEST]\n", argv[0]);
      return 2;
    }
  pid_t pid;
  if (gr_graphroot_dockerd_running (&pid, argv[1], &err) != 0)
    {
      fprintf (stderr, "a dockerd (pid %d) runs on %s\n", (int)pid, argv[1]);
      return 1;
    }
  struct gr_graphroot *root = NULL;
  cleanup_close int dirfd = open (argv[3], O_RDONLY | O_DIRECTORY);
  cleanup_free char *mdata = NULL;
  size_t mlen = 0;
  if (dirfd < 0 || gr_read_file_at (&mdata, &mlen, dirfd, "manifest.json", 0, &err) < 0
      || open_root (&root, argv[1], argv[2], &err) < 0)
    {
      fprintf (stderr, "store-load: %s\n", err ? err->msg : "cannot open save dir");
      return 1;
    }
  json_t *manifest = json_loadb (mdata, mlen, 0, NULL);
  size_t i;
  json_t *m;
  int ret = 0;
  json_array_foreach (manifest, i,
                      m) if (ret == 0 && load_image (root, dirfd, m, argc > 4 ? argv[4] : NULL, &err) < 0) ret
      = -1;
  json_decref (manifest);
  gr_graphroot_free (root);
  if (ret < 0)
    {
      fprintf (stderr, "store-load: %s\n", gr_error_msg (&err));
      gr_error_release (&err);
      return 1;
    }
  return 0;
}

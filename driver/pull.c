/* The pull flow: manifest -> config -> image present? -> layers (parallel
   downloads, each decompressed and extracted as it streams, registered
   parent first) -> imagedb -> distribution metadata -> repositories.json.  */
#include "config.h"

#include "digest.h"
#include "distmeta.h"
#include "imagestore.h"
#include "layerstore.h"
#include "pull.h"
#include "refstore.h"

#include <pthread.h>
#include <string.h>
#include <time.h>
#include <zlib.h>
#ifdef HAVE_ZSTD
#include <zstd.h>
#endif

#define DEFAULT_CONCURRENCY 3
#define INFLATE_CHUNK (256 * 1024)
#define PROGRESS_INTERVAL_NS (100 * 1000000LL)

enum compression
{
  COMP_UNKNOWN,
  COMP_NONE,
  COMP_GZIP,
  COMP_ZSTD,
};

struct pull;

struct layer_job
{
  struct pull *p;
  size_t index;
  const struct gr_descriptor *desc;
  const char *diff_id;
  const char *chain_id;
  const char *parent_chain_id; /* NULL for the base */
  char short_id[13];

  struct gr_layer_writer *w;
  enum compression comp;
  unsigned char head[4];
  size_t head_len;
  z_stream z;
  bool z_init;
#ifdef HAVE_ZSTD
  ZSTD_DStream *zs;
  size_t zs_pending; /* last ZSTD_decompressStream hint: 0 = at a frame end */
#endif
  bool z_end; /* the last gzip member ended */
  unsigned char *out;
  int64_t received;
  int64_t last_report_ns;
  bool downloaded;
};

struct pull
{
  struct gr_graphroot *root;
  struct gr_registry *reg;
  const struct gr_pull_opts *opts;
  const char *source_repo; /* "127.0.0.1:5000/x", "docker.io/library/ubuntu" */
  struct layer_job *jobs;
  size_t n_jobs;

  pthread_mutex_t lock;
  pthread_cond_t cond;
  size_t next_job;     /* the next job a worker takes */
  size_t created_upto; /* jobs [0, created_upto) passed their create step */
  bool abort;
  gr_error_t first_err;
  size_t first_err_index;
  size_t n_downloaded;
  int64_t bytes_downloaded;

  pthread_mutex_t progress_lock;
};

void
gr_pull_result_clear (struct gr_pull_result *res)
{
  free (res->reference);
  memset (res, 0, sizeof (*res));
}

static int64_t
now_ns (void)
{
  struct timespec ts;
  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void
emit (struct pull *p, enum gr_pull_event_kind kind, const char *id, const char *status, int64_t current,
      int64_t total, size_t index)
{
  if (p->opts->progress == NULL)
    return;
  struct gr_pull_event ev = { kind, id, status, current, total, index, p->n_jobs };
  pthread_mutex_lock (&p->progress_lock);
  p->opts->progress (p->opts->progress_arg, &ev);
  pthread_mutex_unlock (&p->progress_lock);
}

json_t *
gr_pull_event_json (const struct gr_pull_event *ev)
{
  json_t *j = json_object ();
  json_object_set_new (j, "status", json_string (ev->status ? ev->status : ""));
  if (ev->id)
    json_object_set_new (j, "id", json_string (ev->id));
  if (ev->current >= 0)
    {
      json_t *d = json_object ();
      json_object_set_new (d, "current", json_integer (ev->current));
      if (ev->total >= 0)
        json_object_set_new (d, "total", json_integer (ev->total));
      json_object_set_new (j, "progressDetail", d);
    }
  return j;
}

/* ------------------------------------------------------------------ */
/* decompression: compressed blob bytes -> layer writer                */

static int
feed_inflate (struct layer_job *j, const unsigned char *buf, size_t len, gr_error_t *err)
{
  j->z.next_in = (unsigned char *)buf;
  j->z.avail_in = (uInt)len;
  while (j->z.avail_in > 0)
    {
      if (j->z_end)
        {
          /* Another gzip member follows (multistream, as Go's reader).  */
          if (inflateReset (&j->z) != Z_OK)
            return gr_make_error (err, EIO, "layer %s: inflateReset", j->desc->digest);
          j->z_end = false;
        }
      j->z.next_out = j->out;
      j->z.avail_out = INFLATE_CHUNK;
      int zr = inflate (&j->z, Z_NO_FLUSH);
      if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
        return gr_make_error (err, EINVAL, "layer %s: gzip: %s", j->desc->digest,
                              j->z.msg ? j->z.msg : "invalid data");
      size_t produced = INFLATE_CHUNK - j->z.avail_out;
      if (produced && gr_layer_writer_write (j->w, j->out, produced, err) < 0)
        return -1;
      if (zr == Z_STREAM_END)
        j->z_end = true;
      else if (zr == Z_BUF_ERROR && produced == 0)
        break;
    }
  return 0;
}

#ifdef HAVE_ZSTD
static int
feed_zstd (struct layer_job *j, const unsigned char *buf, size_t len, gr_error_t *err)
{
  ZSTD_inBuffer in = { buf, len, 0 };
  while (in.pos < in.size)
    {
      ZSTD_outBuffer out = { j->out, INFLATE_CHUNK, 0 };
      size_t r = ZSTD_decompressStream (j->zs, &out, &in);
      if (ZSTD_isError (r))
        return gr_make_error (err, EINVAL, "layer %s: zstd: %s", j->desc->digest, ZSTD_getErrorName (r));
      j->zs_pending = r;
      if (out.pos && gr_layer_writer_write (j->w, j->out, out.pos, err) < 0)
        return -1;
    }
  /* Flush what the decoder still holds for input already consumed.  */
  for (;;)
    {
      ZSTD_outBuffer out = { j->out, INFLATE_CHUNK, 0 };
      size_t r = ZSTD_decompressStream (j->zs, &out, &in);
      if (ZSTD_isError (r))
        return gr_make_error (err, EINVAL, "layer %s: zstd: %s", j->desc->digest, ZSTD_getErrorName (r));
      if (out.pos == 0)
        break; /* a hint for the next frame header: not "pending" data */
      j->zs_pending = r;
      if (gr_layer_writer_write (j->w, j->out, out.pos, err) < 0)
        return -1;
    }
  return 0;
}
#endif

static int
feed_decoded (struct layer_job *j, const unsigned char *buf, size_t len, gr_error_t *err)
{
  if (j->comp == COMP_NONE)
    return gr_layer_writer_write (j->w, buf, len, err);
#ifdef HAVE_ZSTD
  if (j->comp == COMP_ZSTD)
    return feed_zstd (j, buf, len, err);
#endif
  return feed_inflate (j, buf, len, err);
}

static int
detect_compression (struct layer_job *j, gr_error_t *err)
{
  if (j->head_len >= 2 && j->head[0] == 0x1f && j->head[1] == 0x8b)
    {
      j->comp = COMP_GZIP;
      memset (&j->z, 0, sizeof (j->z));
      if (inflateInit2 (&j->z, 15 + 16) != Z_OK)
        return gr_make_error (err, ENOMEM, "inflateInit2");
      j->z_init = true;
      j->out = xmalloc (INFLATE_CHUNK);
    }
  else if (j->head_len >= 4 && j->head[0] == 0x28 && j->head[1] == 0xb5 && j->head[2] == 0x2f
           && j->head[3] == 0xfd)
    {
#ifdef HAVE_ZSTD
      j->comp = COMP_ZSTD;
      j->zs = ZSTD_createDStream ();
      if (j->zs == NULL || ZSTD_isError (ZSTD_initDStream (j->zs)))
        return gr_make_error (err, ENOMEM, "ZSTD_createDStream");
      j->zs_pending = 1;
      j->out = xmalloc (INFLATE_CHUNK);
#else
      return gr_make_error (err, ENOTSUP,
                            "layer %s: zstd compressed layers are not supported (built without libzstd)",
                            j->desc->digest);
#endif
    }
  else if (j->head_len >= 3 && j->head[0] == 'B' && j->head[1] == 'Z' && j->head[2] == 'h')
    return gr_make_error (err, ENOTSUP, "layer %s: bzip2 compressed layers are not supported",
                          j->desc->digest);
  else if (j->head_len >= 4 && j->head[0] == 0xfd && j->head[1] == '7' && j->head[2] == 'z'
           && j->head[3] == 'X')
    return gr_make_error (err, ENOTSUP, "layer %s: xz compressed layers are not supported", j->desc->digest);
  else
    j->comp = COMP_NONE;
  return 0;
}

static int
layer_sink (void *arg, const void *buf, size_t len, gr_error_t *err)
{
  struct layer_job *j = arg;
  struct pull *p = j->p;
  const unsigned char *b = buf;

  if (__atomic_load_n (&p->abort, __ATOMIC_ACQUIRE))
    return gr_make_error (err, ECANCELED, "layer %s: cancelled", j->desc->digest);
  if (p->opts->cancel && __atomic_load_n (p->opts->cancel, __ATOMIC_ACQUIRE))
    return gr_make_error (err, ECANCELED, "layer %s: pull cancelled", j->desc->digest);

  j->received += (int64_t)len;
  int64_t t = now_ns ();
  if (t - j->last_report_ns >= PROGRESS_INTERVAL_NS)
    {
      j->last_report_ns = t;
      emit (p, GR_PULL_EV_LAYER, j->short_id, "Downloading", j->received, j->desc->size, j->index);
    }

  if (j->comp == COMP_UNKNOWN)
    {
      while (len > 0 && j->head_len < sizeof (j->head))
        {
          j->head[j->head_len++] = *b++;
          len--;
        }
      if (j->head_len < sizeof (j->head))
        return 0;
      if (detect_compression (j, err) < 0)
        return -1;
      if (feed_decoded (j, j->head, j->head_len, err) < 0)
        return -1;
    }
  if (len == 0)
    return 0;
  return feed_decoded (j, b, len, err);
}

/* End of the blob: flush what is buffered, check the gzip stream ended.  */
static int
layer_finish_stream (struct layer_job *j, gr_error_t *err)
{
  if (j->comp == COMP_UNKNOWN)
    {
      if (detect_compression (j, err) < 0)
        return -1;
      if (j->head_len && feed_decoded (j, j->head, j->head_len, err) < 0)
        return -1;
    }
#ifdef HAVE_ZSTD
  if (j->comp == COMP_ZSTD && j->zs_pending != 0)
    return gr_make_error (err, EINVAL, "layer %s: zstd: unexpected end of stream", j->desc->digest);
#endif
  if (j->comp == COMP_GZIP && !j->z_end)
    return gr_make_error (err, EINVAL, "layer %s: gzip: unexpected end of stream", j->desc->digest);
  return 0;
}

static void
layer_job_release (struct layer_job *j)
{
  if (j->z_init)
    inflateEnd (&j->z);
  j->z_init = false;
#ifdef HAVE_ZSTD
  ZSTD_freeDStream (j->zs);
  j->zs = NULL;
#endif
  free (j->out);
  j->out = NULL;
  gr_layer_writer_free (j->w);
  j->w = NULL;
}

/* ------------------------------------------------------------------ */
/* workers                                                             */

/* Wait for our turn to create (jobs are created parent first).  */
static void
create_turn_wait (struct pull *p, size_t index)
{
  pthread_mutex_lock (&p->lock);
  while (p->created_upto < index)
    pthread_cond_wait (&p->cond, &p->lock);
  pthread_mutex_unlock (&p->lock);
}

static void
create_turn_done (struct pull *p, size_t index)
{
  pthread_mutex_lock (&p->lock);
  if (p->created_upto < index + 1)
    p->created_upto = index + 1;
  pthread_cond_broadcast (&p->cond);
  pthread_mutex_unlock (&p->lock);
}

static int
process_layer (struct layer_job *j, gr_error_t *err)
{
  struct pull *p = j->p;
  bool exists;
  int ret;

  create_turn_wait (p, j->index);
  if (__atomic_load_n (&p->abort, __ATOMIC_ACQUIRE))
    {
      create_turn_done (p, j->index);
      return gr_make_error (err, ECANCELED, "cancelled");
    }
  exists = gr_layerstore_has (p->root, j->chain_id);
  if (!exists)
    {
      ret = gr_layer_writer_new (&j->w, p->root, j->parent_chain_id, j->diff_id, err);
      create_turn_done (p, j->index);
      if (ret < 0)
        return gr_error_wrap (err, "layer %s", j->desc->digest);
    }
  else
    create_turn_done (p, j->index);

  if (exists)
    {
      emit (p, GR_PULL_EV_LAYER, j->short_id, "Already exists", -1, -1, j->index);
      /* Record the blob as dockerd does on a cache hit.  */
      if (gr_distmeta_add (p->root, j->desc->digest, j->diff_id, p->source_repo, err) < 0)
        return -1;
      return 0;
    }

  emit (p, GR_PULL_EV_LAYER, j->short_id, "Downloading", 0, j->desc->size, j->index);
  ret = gr_registry_fetch_blob (p->reg, j->desc->digest, j->desc->size, layer_sink, j, err);
  if (ret < 0)
    return -1;
  emit (p, GR_PULL_EV_LAYER, j->short_id, "Verifying Checksum", -1, -1, j->index);
  emit (p, GR_PULL_EV_LAYER, j->short_id, "Download complete", -1, -1, j->index);
  pthread_mutex_lock (&p->lock);
  p->n_downloaded++;
  p->bytes_downloaded += j->received;
  pthread_mutex_unlock (&p->lock);

  if (layer_finish_stream (j, err) < 0)
    return -1;
  /* Commit checks the diffID against the config's and waits for the
     parent to be registered.  */
  if (gr_layer_writer_commit (j->w, NULL, err) < 0)
    return -1;
  if (gr_distmeta_add (p->root, j->desc->digest, j->diff_id, p->source_repo, err) < 0)
    return -1;
  emit (p, GR_PULL_EV_LAYER, j->short_id, "Pull complete", -1, -1, j->index);
  return 0;
}

static void *
worker (void *arg)
{
  struct pull *p = arg;
  for (;;)
    {
      pthread_mutex_lock (&p->lock);
      if (p->next_job >= p->n_jobs)
        {
          pthread_mutex_unlock (&p->lock);
          break;
        }
      struct layer_job *j = &p->jobs[p->next_job++];
      pthread_mutex_unlock (&p->lock);

      gr_error_t err = NULL;
      int ret = process_layer (j, &err);
      layer_job_release (j);
      if (ret < 0)
        {
          pthread_mutex_lock (&p->lock);
          __atomic_store_n (&p->abort, true, __ATOMIC_RELEASE);
          /* Report the real cause, not a "cancelled" of a sibling.  */
          bool cancelled = gr_error_status (&err) == ECANCELED;
          if (p->first_err == NULL || (gr_error_status (&p->first_err) == ECANCELED && !cancelled))
            {
              gr_error_release (&p->first_err);
              p->first_err = err;
              p->first_err_index = j->index;
              err = NULL;
            }
          pthread_cond_broadcast (&p->cond);
          pthread_mutex_unlock (&p->lock);
          gr_error_release (&err);
        }
    }
  return NULL;
}

static int
pull_layers (struct pull *p, gr_error_t *err)
{
  unsigned n_threads = p->opts->max_concurrent ? p->opts->max_concurrent : DEFAULT_CONCURRENCY;
  if (n_threads > p->n_jobs)
    n_threads = (unsigned)p->n_jobs;
  if (n_threads == 0)
    return 0;
  pthread_t *th = xzalloc (n_threads * sizeof (pthread_t));
  unsigned started = 0;
  for (unsigned i = 0; i < n_threads; i++)
    {
      if (pthread_create (&th[i], NULL, worker, p) != 0)
        break;
      started++;
    }
  if (started == 0)
    worker (p);
  for (unsigned i = 0; i < started; i++)
    pthread_join (th[i], NULL);
  free (th);
  if (p->first_err && p->opts->cancel && __atomic_load_n (p->opts->cancel, __ATOMIC_ACQUIRE)
      && gr_error_status (&p->first_err) != ECANCELED)
    {
      /* The client went away: what failed after that is its consequence
         (a child whose parent writer was aborted), not the cause.  */
      gr_error_release (&p->first_err);
      gr_make_error (&p->first_err, ECANCELED, "pull cancelled");
    }
  if (p->first_err)
    {
      gr_error_release (err);
      if (err)
        *err = p->first_err;
      else
        gr_error_release (&p->first_err);
      p->first_err = NULL;
      return -1;
    }
  return 0;
}

/* ------------------------------------------------------------------ */
/* the flow                                                            */

static void
free_strv (char **v, size_t n)
{
  if (v == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    free (v[i]);
  free (v);
}

int
gr_pull (struct gr_pull_result *res, struct gr_graphroot *root, const char *ref_str,
         const struct gr_pull_opts *opts, gr_error_t *err)
{
  static const struct gr_pull_opts no_opts = { 0 };
  cleanup_reference struct gr_reference *ref = NULL;
  struct gr_platform want = { 0 };
  struct gr_registry *reg = NULL;
  cleanup_buf struct gr_buf body = { 0 };
  cleanup_buf struct gr_buf config = { 0 };
  cleanup_free char *media_type = NULL;
  cleanup_free char *top_digest = NULL;
  cleanup_free char *familiar = NULL;
  cleanup_free char *full = NULL;
  cleanup_manifest struct gr_manifest *m = NULL;
  struct gr_image_config *cfg = NULL;
  char **chain = NULL;
  size_t n_chain = 0;
  struct pull p = { 0 };
  int ret = -1;

  if (opts == NULL)
    opts = &no_opts;
  memset (res, 0, sizeof (*res));
  if (gr_graphroot_check_writable (root, err) < 0 || gr_reference_parse (&ref, ref_str, err) < 0)
    return -1;
  if (opts->platform)
    {
      if (gr_platform_parse (&want, opts->platform, err) < 0)
        return -1;
    }
  else
    gr_platform_default (&want);

  if (!opts->allow_running_dockerd)
    {
      pid_t pid = 0;
      int r = gr_graphroot_dockerd_running (&pid, root->root, err);
      if (r < 0)
        goto out;
      if (r > 0)
        {
          gr_make_error (err, EBUSY,
                         "dockerd (pid %d) is running on `%s`: it would not see the pulled image; "
                         "stop it first, or use `docker pull`",
                         (int)pid, root->root);
          goto out;
        }
    }

  familiar = gr_reference_familiar_name (ref);
  full = gr_reference_full_name (ref);
  p.root = root;
  p.opts = opts;
  p.source_repo = full;
  pthread_mutex_init (&p.lock, NULL);
  pthread_cond_init (&p.cond, NULL);
  pthread_mutex_init (&p.progress_lock, NULL);

  {
    cleanup_free char *msg = xasprintf ("Pulling from %s", ref->path);
    emit (&p, GR_PULL_EV_START, ref->digest ? ref->digest : ref->tag, msg, -1, -1, 0);
  }

  if (gr_registry_new (&reg, ref, &opts->registry, err) < 0)
    goto out;
  p.reg = reg;
  if (gr_registry_ping (reg, err) < 0)
    goto out;

  /* Manifest (by digest, verified), then the platform's manifest.  */
  if (gr_registry_get_manifest (&body, &media_type, &top_digest, reg, ref->digest ? ref->digest : ref->tag,
                                err)
      < 0)
    goto out;
  if (gr_manifest_parse (&m, media_type, body.data, body.len, err) < 0)
    {
      gr_error_wrap (err, "%s", top_digest);
      goto out;
    }
  bool from_index = m->kind == GR_MANIFEST_INDEX;
  if (m->kind == GR_MANIFEST_INDEX)
    {
      const struct gr_descriptor *d = NULL;
      if (gr_manifest_select (&d, m, &want, err) < 0)
        goto out;
      cleanup_free char *child_digest = xstrdup (d->digest);
      cleanup_free char *child_type = NULL;
      cleanup_free char *got_digest = NULL;
      gr_manifest_free (m);
      m = NULL;
      if (gr_registry_get_manifest (&body, &child_type, &got_digest, reg, child_digest, err) < 0)
        goto out;
      if (gr_manifest_parse (&m, child_type, body.data, body.len, err) < 0)
        {
          gr_error_wrap (err, "%s", child_digest);
          goto out;
        }
      if (m->kind != GR_MANIFEST_IMAGE)
        {
          gr_make_error (err, EINVAL, "%s: an index inside an index is not supported", child_digest);
          goto out;
        }
    }

  /* The config, verified, and its diff_ids against the layers.  */
  if (gr_registry_get_blob (&config, reg, m->config.digest, m->config.size, GR_CONFIG_MAX, err) < 0)
    goto out;
  if (gr_image_config_parse (&cfg, config.data, config.len, err) < 0)
    {
      gr_error_wrap (err, "config %s", m->config.digest);
      goto out;
    }
  if (cfg->n_diff_ids != m->n_layers)
    {
      gr_make_error (err, EINVAL, "config %s lists %zu diff_ids but the manifest has %zu layers",
                     m->config.digest, cfg->n_diff_ids, m->n_layers);
      goto out;
    }
  if (cfg->platform.os && *cfg->platform.os && want.os && strcmp (cfg->platform.os, want.os) != 0)
    {
      gr_make_error (err, EINVAL,
                     "image operating system `%s` cannot be used on this platform "
                     "(`%s`)",
                     cfg->platform.os, want.os);
      goto out;
    }
  /* A single-platform image pulled with an explicit --platform must be of
     that platform (as dockerd 20.10).  */
  if (opts->platform && !from_index
      && !gr_platform_match (&want, cfg->platform.os, cfg->platform.arch, cfg->platform.variant))
    {
      cleanup_free char *w = gr_platform_string (&want);
      gr_make_error (err, EINVAL,
                     "image with reference %s was found but does not match the specified platform: "
                     "wanted %s, actual: %s/%s%s%s",
                     ref_str, w, cfg->platform.os, cfg->platform.arch, cfg->platform.variant ? "/" : "",
                     cfg->platform.variant ? cfg->platform.variant : "");
      goto out;
    }

  char hex[GR_SHA256_HEX_LEN + 1];
  gr_sha256_hex (config.data, config.len, hex);
  snprintf (res->image_id, sizeof (res->image_id), "sha256:%s", hex);
  snprintf (res->manifest_digest, sizeof (res->manifest_digest), "%s", top_digest);
  res->n_layers = m->n_layers;

  n_chain = cfg->n_diff_ids;
  chain = xzalloc ((n_chain ? n_chain : 1) * sizeof (char *));
  gr_chain_ids (chain, cfg->diff_ids, n_chain);

  if (gr_imagestore_has (root, res->image_id))
    res->up_to_date = true;
  else
    {
      p.n_jobs = m->n_layers;
      p.jobs = xzalloc ((p.n_jobs ? p.n_jobs : 1) * sizeof (*p.jobs));
      for (size_t i = 0; i < p.n_jobs; i++)
        {
          struct layer_job *j = &p.jobs[i];
          j->p = &p;
          j->index = i;
          j->desc = &m->layers[i];
          j->diff_id = cfg->diff_ids[i];
          j->chain_id = chain[i];
          j->parent_chain_id = i ? chain[i - 1] : NULL;
          snprintf (j->short_id, sizeof (j->short_id), "%.12s", j->desc->digest + 7);
          emit (&p, GR_PULL_EV_LAYER, j->short_id, "Pulling fs layer", -1, -1, i);
        }
      if (pull_layers (&p, err) < 0)
        goto out;
      res->n_downloaded = p.n_downloaded;
      res->bytes_downloaded = p.bytes_downloaded;
      if (gr_imagestore_put (root, NULL, config.data, config.len, err) < 0)
        goto out;
    }

  /* References last: the image is complete before any name points at it.  */
  if (gr_refstore_add (root, familiar, ref->tag, top_digest, res->image_id, err) < 0)
    goto out;
  if (ref->tag)
    res->reference = xasprintf ("%s:%s", familiar, ref->tag);
  else
    res->reference = xasprintf ("%s@%s", familiar, ref->digest);

  {
    cleanup_free char *dmsg = xasprintf ("Digest: %s", top_digest);
    cleanup_free char *smsg
        = xasprintf ("Status: %s for %s", res->up_to_date ? "Image is up to date" : "Downloaded newer image",
                     res->reference);
    emit (&p, GR_PULL_EV_DIGEST, NULL, dmsg, -1, -1, 0);
    emit (&p, GR_PULL_EV_STATUS, NULL, smsg, -1, -1, 0);
  }
  ret = 0;

out:
  if (ret < 0)
    gr_pull_result_clear (res);
  free (p.jobs);
  gr_error_release (&p.first_err);
  if (p.source_repo)
    {
      pthread_mutex_destroy (&p.lock);
      pthread_cond_destroy (&p.cond);
      pthread_mutex_destroy (&p.progress_lock);
    }
  free_strv (chain, n_chain);
  gr_image_config_free (cfg);
  gr_registry_free (reg);
  gr_platform_clear (&want);
  return ret;
}

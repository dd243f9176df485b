/* Distribution endpoints of the plugin: pull into the graph root, list and
   inspect its images.

   POST /Distribution.Pull     {"Reference":"x:t", "Root":"/var/lib/docker",
                                "Driver":"aufs-graphdriver", "Platform":"linux/amd64",
                                "Username":"..", "Password":"..",
                                "InsecureRegistries":["h:5000"],
                                "MaxConcurrentDownloads":3}
       -> 200, JSON lines (application/x-ndjson): docker-style progress
          {"status":"Downloading","id":"<12 hex>","progressDetail":{..}}, then
          {"status":"done","id":"sha256:<image>","digest":"sha256:<manifest>",
           "reference":"x:t"} or {"error":"..","errorDetail":{"message":".."}}.
   POST /Distribution.Images   {"Root","Driver"}
       -> {"Images":[{"Id","RepoTags","RepoDigests","Size"}]}
   POST /Distribution.Inspect  {"Image":"x:t"|"sha256:..", "Root","Driver"}
       -> {"Id","RepoTags","RepoDigests","Size","Layers":[{"DiffID","ChainID",
           "CacheID","Size"}],"Config":{..}}

   Pull refuses a root whose dockerd runs (dockerd would not see the image;
   a legacy plugin outlives its dockerd: stop dockerd, pull, start it
   again).  Images and Inspect open the root read-only (they create and
   clean up nothing), so they answer while dockerd runs too.

   Root and Driver default to the parent and the name of the Home given to
   GraphDriver.Init (and the layers to that Home, as with --home-override);
   "Backend" (aufs, overlay2, vfs) defaults to the one of a known driver
   name, else to this plugin's own, aufs.  */
#include "config.h"

#include "digest.h"
#include "driver.h"
#include "graphroot.h"
#include "imagestore.h"
#include "layerstore.h"
#include "pull.h"
#include "refstore.h"
#include "server.h"

#include <libgen.h>
#include <string.h>

static void
json_cleanup (json_t **j)
{
  if (*j)
    json_decref (*j);
}
#define cleanup_json __attribute__ ((cleanup (json_cleanup)))

/* Where to work: the data root, the driver name (as dockerd calls it:
   image/<name>/), the backend and the backend's home (NULL: <root>/<name>).  */
struct target
{
  char *root;
  char *driver;
  char *backend;
  char *home;
};

static void
target_clear (struct target *t)
{
  free (t->root);
  free (t->driver);
  free (t->backend);
  free (t->home);
  memset (t, 0, sizeof (*t));
}

/* From the request's Root/Driver[/Backend], else from the Init'ed driver
   (its Home is <root>/<driver name>; its backend is ours).  */
static int
resolve_target (struct target *t, json_t *req, gr_error_t *err)
{
  const char *r = NULL, *d = NULL, *b = NULL;
  if (srv_json_get_string (&r, req, "Root", err) < 0 || srv_json_get_string (&d, req, "Driver", err) < 0
      || srv_json_get_string (&b, req, "Backend", err) < 0)
    return -1;
  if (b && gr_backend_lookup (b) == NULL)
    return gr_make_error (err, EINVAL, "Backend `%s` is not aufs, overlay2 or vfs", b);
  if (r && d)
    {
      if (r[0] != '/')
        return gr_make_error (err, EINVAL, "Root `%s` is not an absolute path", r);
      if (gr_id_validate (d, err) < 0)
        return gr_error_wrap (err, "Driver");
      const char *known = gr_graphroot_backend_for (d);
      t->root = xstrdup (r);
      t->driver = xstrdup (d);
      /* A plugin name: this plugin's own backend unless told.  */
      t->backend = xstrdup (b ? b : known ? known : "aufs");
      return 0;
    }
  struct gr_driver *drv = graphdriver_acquire (err);
  if (drv == NULL)
    return gr_error_wrap (err, "no Root/Driver given and no GraphDriver.Init yet");
  cleanup_free char *h1 = xstrdup (drv->home);
  cleanup_free char *h2 = xstrdup (drv->home);
  t->backend = xstrdup (b ? b : drv->ops->name);
  t->home = xstrdup (drv->home);
  graphdriver_release (drv);
  t->root = xstrdup (r ? r : dirname (h1));
  t->driver = xstrdup (d ? d : basename (h2));
  return 0;
}

static int
open_target (struct gr_graphroot **root, const struct target *t, gr_error_t *err)
{
  return gr_graphroot_open_with (root, t->root, t->driver, t->backend, t->home, err);
}

/* ------------------------------------------------------------------ */
/* Pull                                                                */

struct pull_job
{
  struct target t;
  char *ref;
  char *platform;
  char *username;
  char *password;
  char **insecure;
  size_t n_insecure;
  unsigned max_concurrent;
  int out_fd;
  bool write_failed; /* the client went away: cancels the pull */
};

static void
pull_job_free (void *arg)
{
  struct pull_job *j = arg;
  target_clear (&j->t);
  free (j->ref);
  free (j->platform);
  free (j->username);
  if (j->password)
    explicit_bzero (j->password, strlen (j->password));
  free (j->password);
  for (size_t i = 0; i < j->n_insecure; i++)
    free (j->insecure[i]);
  free (j->insecure);
  free (j);
}

static void
write_line (struct pull_job *j, json_t *obj)
{
  if (__atomic_load_n (&j->write_failed, __ATOMIC_ACQUIRE))
    return;
  char *s = json_dumps (obj, JSON_COMPACT);
  cleanup_free char *line = xasprintf ("%s\n", s);
  free (s);
  gr_error_t err = NULL;
  if (gr_write_all (j->out_fd, line, strlen (line), &err) < 0)
    {
      __atomic_store_n (&j->write_failed, true, __ATOMIC_RELEASE);
      gr_error_release (&err);
    }
}

static void
pull_progress (void *arg, const struct gr_pull_event *ev)
{
  struct pull_job *j = arg;
  cleanup_json json_t *o = gr_pull_event_json (ev);
  write_line (j, o);
}

static int
pull_producer (void *arg, int out_fd, gr_error_t *err)
{
  struct pull_job *j = arg;
  struct gr_graphroot *root = NULL;
  struct gr_pull_result res = { 0 };
  gr_error_t perr = NULL;
  int ret = -1;

  j->out_fd = out_fd;
  pid_t pid = 0;
  int running = gr_graphroot_dockerd_running (&pid, j->t.root, &perr);
  if (running > 0)
    gr_make_error (&perr, EBUSY,
                   "dockerd (pid %d) is running on `%s`: it would not see the pulled image; "
                   "stop it first, or use `docker pull`",
                   (int)pid, j->t.root);
  if (running == 0 && open_target (&root, &j->t, &perr) == 0)
    {
      struct gr_pull_opts opts = {
        .platform = j->platform,
        .max_concurrent = j->max_concurrent,
        .registry = { .username = j->username,
                      .password = j->password,
                      .insecure = (const char *const *)j->insecure,
                      .n_insecure = j->n_insecure },
        .progress = pull_progress,
        .progress_arg = j,
        .allow_running_dockerd = true,
        .cancel = &j->write_failed,
      };
      ret = gr_pull (&res, root, j->ref, &opts, &perr);
    }
  if (ret == 0)
    {
      cleanup_json json_t *o
          = json_pack ("{s:s,s:s,s:s,s:s,s:b}", "status", "done", "id", res.image_id, "digest",
                       res.manifest_digest, "reference", res.reference, "upToDate", res.up_to_date);
      write_line (j, o);
      srv_log (SRV_LOG_INFO, "pulled %s: %s", res.reference, res.image_id);
    }
  else
    {
      cleanup_json json_t *o = json_pack ("{s:s,s:{s:s}}", "error", gr_error_msg (&perr), "errorDetail",
                                          "message", gr_error_msg (&perr));
      write_line (j, o);
      srv_log (SRV_LOG_WARN, "pull %s: %s", j->ref, gr_error_msg (&perr));
    }
  gr_error_release (&perr);
  gr_pull_result_clear (&res);
  gr_graphroot_free (root);
  (void)err;
  /* The outcome is in the stream; a write failure means the client left.  */
  return 0;
}

static int
handle_pull (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  const char *ref = NULL, *platform = NULL, *user = NULL, *pass = NULL;
  if (srv_json_get_string (&ref, req->json, "Reference", err) < 0
      || srv_json_get_string (&platform, req->json, "Platform", err) < 0
      || srv_json_get_string (&user, req->json, "Username", err) < 0
      || srv_json_get_string (&pass, req->json, "Password", err) < 0)
    return -1;
  if (ref == NULL || *ref == '\0')
    return gr_make_error (err, EINVAL, "Reference is required");
  json_t *mc = json_object_get (req->json, "MaxConcurrentDownloads");
  if (mc && !json_is_null (mc)
      && (!json_is_integer (mc) || json_integer_value (mc) < 1 || json_integer_value (mc) > 64))
    return gr_make_error (err, EINVAL, "MaxConcurrentDownloads: expected 1..64");
  json_t *ins = json_object_get (req->json, "InsecureRegistries");
  if (ins && !json_is_null (ins) && !json_is_array (ins))
    return gr_make_error (err, EINVAL, "InsecureRegistries: expected an array of strings");

  struct pull_job *j = xzalloc (sizeof (*j));
  if (resolve_target (&j->t, req->json, err) < 0)
    {
      pull_job_free (j);
      return -1;
    }
  j->ref = xstrdup (ref);
  j->platform = platform ? xstrdup (platform) : NULL;
  j->username = user ? xstrdup (user) : NULL;
  j->password = pass ? xstrdup (pass) : NULL;
  j->max_concurrent = mc && json_is_integer (mc) ? (unsigned)json_integer_value (mc) : 0;
  size_t i;
  json_t *v;
  json_array_foreach (ins, i, v)
  {
    if (!json_is_string (v))
      {
        pull_job_free (j);
        return gr_make_error (err, EINVAL, "InsecureRegistries[%zu] is not a string", i);
      }
    j->insecure = xrealloc (j->insecure, (j->n_insecure + 1) * sizeof (char *));
    j->insecure[j->n_insecure++] = xstrdup (json_string_value (v));
  }
  reply->producer = pull_producer;
  reply->producer_arg = j;
  reply->producer_arg_free = pull_job_free;
  reply->content_type = "application/x-ndjson";
  return 0;
}

/* ------------------------------------------------------------------ */
/* Images / Inspect                                                    */

/* image ID -> {"RepoTags":[..],"RepoDigests":[..]} from repositories.json.  */
static json_t *
refs_by_image (json_t *repos)
{
  json_t *out = json_object ();
  json_t *r = json_object_get (repos, "Repositories");
  const char *name;
  json_t *refs;
  json_object_foreach (r, name, refs)
  {
    const char *ref;
    json_t *id;
    json_object_foreach (refs, ref, id)
    {
      if (!json_is_string (id))
        continue;
      json_t *e = json_object_get (out, json_string_value (id));
      if (e == NULL)
        {
          e = json_pack ("{s:[],s:[]}", "RepoTags", "RepoDigests");
          json_object_set_new (out, json_string_value (id), e);
        }
      json_array_append_new (json_object_get (e, strchr (ref, '@') ? "RepoDigests" : "RepoTags"),
                             json_string (ref));
    }
  }
  return out;
}

/* Size and layers of an image from its config.  */
static int
image_layers (json_t **layers_out, int64_t *size, struct gr_graphroot *root, const char *config, size_t len,
              gr_error_t *err)
{
  struct gr_image_config *cfg = NULL;
  if (gr_image_config_parse (&cfg, config, len, err) < 0)
    return -1;
  json_t *layers = json_array ();
  *size = 0;
  char parent[GR_DIGEST_LEN + 1] = "";
  for (size_t i = 0; i < cfg->n_diff_ids; i++)
    {
      char chain[GR_DIGEST_LEN + 1];
      struct gr_layer_info info;
      if (gr_layer_chain_id (chain, parent, cfg->diff_ids[i], err) < 0
          || gr_layerstore_get (root, &info, chain, err) < 0)
        {
          json_decref (layers);
          gr_image_config_free (cfg);
          return -1;
        }
      *size += info.size;
      json_array_append_new (layers,
                             json_pack ("{s:s,s:s,s:s,s:I}", "DiffID", info.diff_id, "ChainID", info.chain_id,
                                        "CacheID", info.cache_id, "Size", (json_int_t)info.size));
      memcpy (parent, chain, sizeof (parent));
    }
  gr_image_config_free (cfg);
  *layers_out = layers;
  return 0;
}

static json_t *
image_summary (struct gr_graphroot *root, const char *id, json_t *refs, bool full, gr_error_t *err)
{
  cleanup_free char *config = NULL;
  size_t len = 0;
  json_t *layers = NULL;
  int64_t size = 0;
  if (gr_imagestore_get (root, &config, &len, id, err) < 0)
    return NULL;
  if (image_layers (&layers, &size, root, config, len, err) < 0)
    {
      gr_error_wrap (err, "image %s", id);
      return NULL;
    }
  json_t *e = json_object_get (refs, id);
  json_t *tags = e ? json_incref (json_object_get (e, "RepoTags")) : json_array ();
  json_t *digests = e ? json_incref (json_object_get (e, "RepoDigests")) : json_array ();
  json_t *o = json_pack ("{s:s,s:o,s:o,s:I}", "Id", id, "RepoTags", tags, "RepoDigests", digests, "Size",
                         (json_int_t)size);
  if (full)
    {
      json_object_set_new (o, "Layers", layers);
      json_t *c = json_loadb (config, len, 0, NULL);
      if (c)
        json_object_set_new (o, "Config", c);
    }
  else
    json_decref (layers);
  return o;
}

/* Images and Inspect only read the stores: a read-only open (no cleanup of
   layerdb/tmp, which could hold a live dockerd's write sets), fine beside
   a running dockerd.  */
static int
open_root (struct gr_graphroot **root, json_t *req, gr_error_t *err)
{
  struct target t = { 0 };
  if (resolve_target (&t, req, err) < 0)
    return -1;
  int ret = gr_graphroot_open_readonly (root, t.root, t.driver, err);
  target_clear (&t);
  return ret;
}

static int
handle_images (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  struct gr_graphroot *root = NULL;
  cleanup_json json_t *ids = NULL;
  cleanup_json json_t *repos = NULL;
  cleanup_json json_t *refs = NULL;
  if (open_root (&root, req->json, err) < 0)
    return -1;
  int ret = -1;
  if (gr_imagestore_list (root, &ids, err) < 0 || gr_refstore_load (root, &repos, err) < 0)
    goto out;
  refs = refs_by_image (repos);
  json_t *images = json_array ();
  size_t i;
  json_t *id;
  json_array_foreach (ids, i, id)
  {
    json_t *o = image_summary (root, json_string_value (id), refs, false, err);
    if (o == NULL && gr_error_status (err) == ENOENT)
      {
        /* Removed while we listed (dockerd deletes the config, then the
           layers), or a layer is missing: dockerd does not list it either.  */
        gr_error_release (err);
        continue;
      }
    if (o == NULL)
      {
        json_decref (images);
        goto out;
      }
    json_array_append_new (images, o);
  }
  reply->json = json_pack ("{s:o}", "Images", images);
  ret = 0;
out:
  gr_graphroot_free (root);
  return ret;
}

static int
handle_inspect (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  struct gr_graphroot *root = NULL;
  cleanup_json json_t *repos = NULL;
  cleanup_json json_t *refs = NULL;
  cleanup_free char *id = NULL;
  const char *image = NULL;
  if (srv_json_get_string (&image, req->json, "Image", err) < 0)
    return -1;
  if (image == NULL || *image == '\0')
    return gr_make_error (err, EINVAL, "Image is required");
  if (open_root (&root, req->json, err) < 0)
    return -1;
  int ret = -1;
  if (gr_digest_valid (image))
    id = xstrdup (image);
  else if (gr_hex64_valid (image))
    id = xasprintf ("sha256:%s", image);
  else
    {
      int found = gr_refstore_lookup (root, &id, image, err);
      if (found < 0)
        goto out;
      if (found == 0)
        {
          gr_make_error (err, ENOENT, "no such image: %s", image);
          goto out;
        }
    }
  if (!gr_imagestore_has (root, id))
    {
      gr_make_error (err, ENOENT, "no such image: %s", image);
      goto out;
    }
  if (gr_refstore_load (root, &repos, err) < 0)
    goto out;
  refs = refs_by_image (repos);
  reply->json = image_summary (root, id, refs, true, err);
  ret = reply->json ? 0 : -1;
out:
  gr_graphroot_free (root);
  return ret;
}

static const struct srv_route routes[] = {
  { "/Distribution.Pull", SRV_BODY_JSON, handle_pull, NULL },
  { "/Distribution.Images", SRV_BODY_JSON, handle_images, NULL },
  { "/Distribution.Inspect", SRV_BODY_JSON, handle_inspect, NULL },
};

static int
distribution_start (struct srv *srv, const struct plugin_config *cfg, gr_error_t *err)
{
  return srv_add_routes (srv, routes, sizeof (routes) / sizeof (routes[0]), err);
}

const struct srv_provider distribution_provider = {
  "distribution",
  distribution_start,
  NULL,
};

/* Docker's GraphDriver plugin protocol: one handler per endpoint, JSON in,
   driver/driver.h calls, JSON out.  See REFERENCE.md §2.  */
#include "config.h"

#include "driver.h"
#include "fsutil.h"
#include "server.h"

#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>

#define BACKEND_NAME "aufs"

/* A driver opened by Init.  The current one holds one reference for being
   current; each request holds one while it uses it.  A re-Init with
   another Home retires the old one, which is cleaned up and freed when its
   last user releases it.  */
struct gd_instance
{
  struct gr_driver *d;
  unsigned int refs;
  struct gd_instance *next; /* in the retired list */
};

static pthread_mutex_t gd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t gd_init_lock = PTHREAD_MUTEX_INITIALIZER;
static struct gd_instance *gd_current;
static struct gd_instance *gd_retired;
static const struct plugin_config *gd_cfg;

static void
instance_destroy (struct gd_instance *inst)
{
  cleanup_error gr_error_t err = NULL;
  if (inst->d->ops->cleanup && inst->d->ops->cleanup (inst->d, &err) < 0)
    srv_log (SRV_LOG_ERROR, "cleanup of the driver at %s: %s", inst->d->home, gr_error_msg (&err));
  srv_log (SRV_LOG_INFO, "closed the driver at %s", inst->d->home);
  gr_driver_free (inst->d);
  free (inst);
}

struct gr_driver *
graphdriver_acquire (gr_error_t *err)
{
  struct gr_driver *d = NULL;
  pthread_mutex_lock (&gd_lock);
  if (gd_current)
    {
      gd_current->refs++;
      d = gd_current->d;
    }
  pthread_mutex_unlock (&gd_lock);
  if (d == NULL)
    gr_make_error (err, EINVAL, "the driver is not initialized: call /GraphDriver.Init first");
  return d;
}

void
graphdriver_release (struct gr_driver *d)
{
  struct gd_instance *dead = NULL;
  if (d == NULL)
    return;
  pthread_mutex_lock (&gd_lock);
  if (gd_current && gd_current->d == d)
    {
      assert (gd_current->refs > 1);
      gd_current->refs--;
    }
  else
    {
      for (struct gd_instance **p = &gd_retired; *p; p = &(*p)->next)
        if ((*p)->d == d)
          {
            if (--(*p)->refs == 0)
              {
                dead = *p;
                *p = dead->next;
              }
            break;
          }
    }
  pthread_mutex_unlock (&gd_lock);
  if (dead)
    instance_destroy (dead);
}

/* Replace the current driver (NULL: just drop it).  */
static void
set_current (struct gr_driver *d)
{
  struct gd_instance *dead = NULL;
  struct gd_instance *inst = NULL;
  if (d)
    {
      inst = xzalloc (sizeof (*inst));
      inst->d = d;
      inst->refs = 1;
    }
  pthread_mutex_lock (&gd_lock);
  if (gd_current)
    {
      if (--gd_current->refs == 0)
        dead = gd_current;
      else
        {
          gd_current->next = gd_retired;
          gd_retired = gd_current;
        }
    }
  gd_current = inst;
  pthread_mutex_unlock (&gd_lock);
  if (dead)
    instance_destroy (dead);
}

static void
cleanup_driverp (struct gr_driver **d)
{
  graphdriver_release (*d);
}
#define cleanup_driver __attribute__ ((cleanup (cleanup_driverp)))

/* A reply {"Err":""} plus one member (taking ownership of VALUE).  */
static json_t *
ok_with (const char *key, json_t *value)
{
  json_t *o = json_object ();
  json_object_set_new (o, "Err", json_string (""));
  if (key)
    json_object_set_new (o, key, value ? value : json_null ());
  return o;
}

/* ----------------------------------------------------------- endpoints */

static int
handle_activate (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  reply->json = json_pack ("{s:[s]}", "Implements", "GraphDriver");
  return 0;
}

static int
get_string_array (json_t *obj, const char *key, const char ***out, size_t *n, gr_error_t *err)
{
  json_t *v = json_object_get (obj, key);
  size_t i;
  json_t *e;

  *out = NULL;
  *n = 0;
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_array (v))
    return gr_make_error (err, EINVAL, "`%s` must be an array of strings", key);
  *out = xzalloc ((json_array_size (v) + 1) * sizeof (char *));
  json_array_foreach (v, i, e)
  {
    if (!json_is_string (e))
      {
        free (*out);
        *out = NULL;
        return gr_make_error (err, EINVAL, "`%s` must be an array of strings", key);
      }
    (*out)[i] = json_string_value (e);
  }
  *n = json_array_size (v);
  return 0;
}

static int
check_id_maps (json_t *obj, const char *key, gr_error_t *err)
{
  json_t *v = json_object_get (obj, key);
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_array (v))
    return gr_make_error (err, EINVAL, "`%s` must be an array", key);
  if (json_array_size (v) > 0)
    return gr_make_error (err, ENOTSUP, "user namespace remapping (%s) is not supported by this driver", key);
  return 0;
}

/* Home as dockerd sends it: <data-root>/<driver>, an absolute, normalised
   path below the root.  `..` components, `/` itself and control characters
   are refused rather than followed.  */
static int
check_home (const char *home, gr_error_t *err)
{
  if (strcmp (home, "/") == 0)
    return gr_make_error (err, EINVAL, "`Home` cannot be `/`");
  for (const char *p = home; *p; p++)
    if ((unsigned char) *p < 0x20 || *p == 0x7f)
      return gr_make_error (err, EINVAL, "`Home` contains a control character");
  for (const char *c = home + 1; c && *c; c = strchr (c, '/'), c = c ? c + 1 : NULL)
    {
      size_t n = strcspn (c, "/");
      if ((n == 1 && c[0] == '.') || (n == 2 && c[0] == '.' && c[1] == '.'))
        return gr_make_error (err, EINVAL, "`Home` must not contain `.` or `..` components, got `%s`", home);
    }
  return 0;
}

/* Open the driver an Init request (or its saved copy) names.  */
static int
init_driver (json_t *req, gr_error_t *err)
{
  cleanup_free const char **opts = NULL;
  struct gr_driver_opts dopts = { 0 };
  struct gr_driver *d = NULL;
  const char *home;
  size_t n_opts;
  bool same;

  if (srv_json_get_string (&home, req, "Home", err) < 0)
    return -1;
  if (gd_cfg->home_override)
    home = gd_cfg->home_override;
  if (home == NULL || home[0] == '\0')
    return gr_make_error (err, EINVAL, "missing `Home`");
  if (home[0] != '/')
    return gr_make_error (err, EINVAL, "`Home` must be an absolute path, got `%s`", home);
  if (check_home (home, err) < 0)
    return -1;
  if (get_string_array (req, "Opts", &opts, &n_opts, err) < 0)
    return -1;
  if (check_id_maps (req, "UIDMaps", err) < 0 || check_id_maps (req, "GIDMaps", err) < 0)
    return -1;

  pthread_mutex_lock (&gd_init_lock);
  pthread_mutex_lock (&gd_lock);
  same = gd_current && strcmp (gd_current->d->home, home) == 0;
  pthread_mutex_unlock (&gd_lock);
  if (same)
    {
      pthread_mutex_unlock (&gd_init_lock);
      srv_log (SRV_LOG_DEBUG, "Init: driver already open at %s", home);
      return 0;
    }
  dopts.mount_method = gd_cfg->mount_method;
  dopts.opts = opts;
  dopts.n_opts = n_opts;
  if (gr_driver_open (&d, BACKEND_NAME, home, &dopts, err) < 0)
    {
      pthread_mutex_unlock (&gd_init_lock);
      return -1;
    }
  set_current (d);
  pthread_mutex_unlock (&gd_init_lock);
  srv_log (SRV_LOG_INFO, "opened the %s driver at %s", BACKEND_NAME, home);
  return 0;
}

static int
handle_init (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  if (init_driver (req->json, err) < 0)
    return -1;
  if (gd_cfg->init_state)
    {
      cleanup_free char *state = json_dumps (req->json, JSON_COMPACT);
      if (state == NULL
          || gr_write_file_atomic (AT_FDCWD, gd_cfg->init_state, state, strlen (state), 0600, err) < 0)
        {
          if (state == NULL)
            gr_make_error (err, ENOMEM, "encode the Init request");
          return gr_error_wrap (err, "keep the Init request in `%s`", gd_cfg->init_state);
        }
    }
  reply->json = ok_with (NULL, NULL);
  return 0;
}

/* At start: replay the Init kept by an earlier run, if any.  */
static int
replay_init (gr_error_t *err)
{
  cleanup_free char *data = NULL;
  json_error_t jerr;

  if (gd_cfg->init_state == NULL)
    return 0;
  if (gr_read_file_at (&data, NULL, AT_FDCWD, gd_cfg->init_state, SRV_JSON_MAX, err) < 0)
    {
      if (gr_error_status (err) != ENOENT)
        return gr_error_wrap (err, "init state");
      gr_error_release (err);
      return 0;
    }
  json_t *req = json_loads (data, 0, &jerr);
  if (req == NULL || ! json_is_object (req))
    {
      json_decref (req);
      return gr_make_error (err, EINVAL, "init state `%s`: not a JSON object", gd_cfg->init_state);
    }
  int r = init_driver (req, err);
  json_decref (req);
  if (r < 0)
    return gr_error_wrap (err, "replay the Init kept in `%s`", gd_cfg->init_state);
  return 0;
}

static int
handle_capabilities (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  /* Diffs are regenerated from the layer dirs, so they may differ from the
     tar that was applied: dockerd then rebuilds tars from tar-split.  */
  reply->json = ok_with ("Capabilities", json_pack ("{s:b}", "ReproducesExactDiffs", 0));
  return 0;
}

static int
do_create (struct srv_reply *reply, const struct srv_request *req, bool rw, gr_error_t *err)
{
  cleanup_driver struct gr_driver *d = NULL;
  const char *id, *parent;
  json_t *sopt;

  if (srv_json_get_id (&id, req->json, "ID", true, err) < 0
      || srv_json_get_id (&parent, req->json, "Parent", false, err) < 0)
    return -1;
  sopt = json_object_get (req->json, "StorageOpt");
  if (sopt && !json_is_null (sopt))
    {
      if (!json_is_object (sopt))
        return gr_make_error (err, EINVAL, "`StorageOpt` must be an object");
      if (json_object_size (sopt) > 0)
        return gr_make_error (err, ENOTSUP, "--storage-opt is not supported for aufs");
    }
  d = graphdriver_acquire (err);
  if (d == NULL)
    return -1;
  if (d->ops->create (d, id, parent, rw, err) < 0)
    return -1;
  reply->json = ok_with (NULL, NULL);
  return 0;
}

static int
handle_create (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  return do_create (reply, req, false, err);
}

static int
handle_create_rw (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  return do_create (reply, req, true, err);
}

/* The common start of the ID-taking endpoints: validate, then take the
   driver.  */
static struct gr_driver *
begin_id (const char **id, const char **parent, const struct srv_request *req, gr_error_t *err)
{
  if (srv_json_get_id (id, req->json, "ID", true, err) < 0)
    return NULL;
  if (parent && srv_json_get_id (parent, req->json, "Parent", false, err) < 0)
    return NULL;
  return graphdriver_acquire (err);
}

static int
handle_remove (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  const char *id;
  cleanup_driver struct gr_driver *d = begin_id (&id, NULL, req, err);
  if (d == NULL || d->ops->remove (d, id, err) < 0)
    return -1;
  reply->json = ok_with (NULL, NULL);
  return 0;
}

static int
handle_get (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  cleanup_free char *dir = NULL;
  const char *id;
  cleanup_driver struct gr_driver *d = begin_id (&id, NULL, req, err);
  if (d == NULL || d->ops->get (d, &dir, id, err) < 0)
    return -1;
  reply->json = ok_with ("Dir", json_string (dir));
  return 0;
}

static int
handle_put (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  const char *id;
  cleanup_driver struct gr_driver *d = begin_id (&id, NULL, req, err);
  if (d == NULL || d->ops->put (d, id, err) < 0)
    return -1;
  reply->json = ok_with (NULL, NULL);
  return 0;
}

static int
handle_exists (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  const char *id;
  cleanup_driver struct gr_driver *d = begin_id (&id, NULL, req, err);
  if (d == NULL)
    return -1;
  reply->json = ok_with ("Exists", json_boolean (d->ops->exists (d, id)));
  return 0;
}

static int
handle_status (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  cleanup_driver struct gr_driver *d = graphdriver_acquire (err);
  json_t *st;
  if (d == NULL)
    return -1;
  st = d->ops->status ? d->ops->status (d) : NULL;
  reply->json = ok_with ("Status", st ? st : json_array ());
  return 0;
}

static int
handle_metadata (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  json_t *md = NULL;
  const char *id;
  cleanup_driver struct gr_driver *d = begin_id (&id, NULL, req, err);
  if (d == NULL || d->ops->metadata (d, &md, id, err) < 0)
    return -1;
  reply->json = ok_with ("Metadata", md ? md : json_object ());
  return 0;
}

static int
handle_cleanup (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  cleanup_driver struct gr_driver *d = graphdriver_acquire (err);
  if (d == NULL || d->ops->cleanup (d, err) < 0)
    return -1;
  reply->json = ok_with (NULL, NULL);
  return 0;
}

/* Diff: the tar is produced by a thread of the server (see srv_reply).  */
struct diff_job
{
  struct gr_driver *d; /* a reference */
  char *id;
  char *parent;
};

static void
diff_job_free (void *arg)
{
  struct diff_job *job = arg;
  graphdriver_release (job->d);
  free (job->id);
  free (job->parent);
  free (job);
}

static int
diff_produce (void *arg, int out_fd, gr_error_t *err)
{
  struct diff_job *job = arg;
  return job->d->ops->diff (job->d, out_fd, job->id, job->parent, err);
}

static int
handle_diff (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  const char *id, *parent;
  struct gr_driver *d = begin_id (&id, &parent, req, err);
  struct diff_job *job;
  if (d == NULL)
    return -1;
  job = xzalloc (sizeof (*job));
  job->d = d;
  job->id = xstrdup (id);
  job->parent = parent ? xstrdup (parent) : NULL;
  reply->producer = diff_produce;
  reply->producer_arg = job;
  reply->producer_arg_free = diff_job_free;
  reply->content_type = "application/x-tar";
  return 0;
}

static int
handle_changes (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  json_t *changes = NULL;
  const char *id, *parent;
  cleanup_driver struct gr_driver *d = begin_id (&id, &parent, req, err);
  if (d == NULL || d->ops->changes (d, &changes, id, parent, err) < 0)
    return -1;
  reply->json = ok_with ("Changes", changes ? changes : json_array ());
  return 0;
}

static int
handle_diff_size (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  int64_t size = 0;
  const char *id, *parent;
  cleanup_driver struct gr_driver *d = begin_id (&id, &parent, req, err);
  if (d == NULL || d->ops->diff_size (d, &size, id, parent, err) < 0)
    return -1;
  reply->json = ok_with ("Size", json_integer (size));
  return 0;
}

/* ApplyDiff?id=ID&parent=P with the raw tar as the (usually chunked) body,
   read from req->body_fd while the connection keeps feeding it.  */
static int
handle_apply_diff (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err)
{
  cleanup_driver struct gr_driver *d = NULL;
  const char *id = srv_request_query (req, "id");
  const char *parent = srv_request_query (req, "parent");
  int64_t size = 0;

  if (id == NULL || id[0] == '\0')
    return gr_make_error (err, EINVAL, "missing `id` query parameter");
  if (gr_id_validate (id, err) < 0)
    return gr_error_wrap (err, "`id`");
  if (parent && parent[0] == '\0')
    parent = NULL;
  if (parent && gr_id_validate (parent, err) < 0)
    return gr_error_wrap (err, "`parent`");
  d = graphdriver_acquire (err);
  if (d == NULL)
    return -1;
  if (d->ops->apply_diff (d, &size, id, parent, req->body_fd, err) < 0)
    return -1;
  reply->json = ok_with ("Size", json_integer (size));
  return 0;
}

static const struct srv_route routes[] = {
  { "/Plugin.Activate", SRV_BODY_JSON, handle_activate, NULL },
  { "/GraphDriver.Init", SRV_BODY_JSON, handle_init, NULL },
  { "/GraphDriver.Capabilities", SRV_BODY_JSON, handle_capabilities, NULL },
  { "/GraphDriver.Create", SRV_BODY_JSON, handle_create, NULL },
  { "/GraphDriver.CreateReadWrite", SRV_BODY_JSON, handle_create_rw, NULL },
  { "/GraphDriver.Remove", SRV_BODY_JSON, handle_remove, NULL },
  { "/GraphDriver.Get", SRV_BODY_JSON, handle_get, NULL },
  { "/GraphDriver.Put", SRV_BODY_JSON, handle_put, NULL },
  { "/GraphDriver.Exists", SRV_BODY_JSON, handle_exists, NULL },
  { "/GraphDriver.Status", SRV_BODY_JSON, handle_status, NULL },
  { "/GraphDriver.GetMetadata", SRV_BODY_JSON, handle_metadata, NULL },
  { "/GraphDriver.Cleanup", SRV_BODY_JSON, handle_cleanup, NULL },
  { "/GraphDriver.Diff", SRV_BODY_JSON, handle_diff, NULL },
  { "/GraphDriver.Changes", SRV_BODY_JSON, handle_changes, NULL },
  { "/GraphDriver.ApplyDiff", SRV_BODY_STREAM, handle_apply_diff, NULL },
  { "/GraphDriver.DiffSize", SRV_BODY_JSON, handle_diff_size, NULL },
};

static int
graphdriver_start (struct srv *srv, const struct plugin_config *cfg, gr_error_t *err)
{
  gd_cfg = cfg;
  if (replay_init (err) < 0)
    {
      /* dockerd's next Init can still open a driver: serve on.  */
      srv_log (SRV_LOG_WARN, "%s", gr_error_msg (err));
      gr_error_release (err);
    }
  return srv_add_routes (srv, routes, sizeof (routes) / sizeof (routes[0]), err);
}

/* At shutdown: unmount what we mounted and close every driver.  */
static void
graphdriver_stop (void)
{
  set_current (NULL);
  pthread_mutex_lock (&gd_lock);
  while (gd_retired)
    {
      struct gd_instance *inst = gd_retired;
      gd_retired = inst->next;
      srv_log (SRV_LOG_WARN, "driver at %s still has %u users at shutdown", inst->d->home, inst->refs);
      pthread_mutex_unlock (&gd_lock);
      instance_destroy (inst);
      pthread_mutex_lock (&gd_lock);
    }
  pthread_mutex_unlock (&gd_lock);
}

const struct srv_provider graphdriver_provider = {
  "graphdriver",
  graphdriver_start,
  graphdriver_stop,
};

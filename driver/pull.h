/* Pull an image from a registry straight into a graph root, as `docker
   pull` would leave it: layers (layerdb + backend dirs), the image config
   (imagedb), distribution metadata and repositories.json.  */
#ifndef GR_PULL_H
#define GR_PULL_H

#include "graphroot.h"
#include "layerstore.h"
#include "registry.h"

#include <jansson.h>

enum gr_pull_event_kind
{
  GR_PULL_EV_START,  /* id: tag or digest; message "Pulling from <path>" */
  GR_PULL_EV_LAYER,  /* id: 12 hex of the blob; status + current/total */
  GR_PULL_EV_DIGEST, /* message: "Digest: sha256:.." */
  GR_PULL_EV_STATUS, /* message: the final "Status: ..." line */
};

struct gr_pull_event
{
  enum gr_pull_event_kind kind;
  const char *id;     /* may be NULL */
  const char *status; /* "Pulling fs layer", "Waiting", "Downloading", "Verifying Checksum",
                         "Pull complete", "Already exists", or the message */
  int64_t current;    /* bytes, -1 if not a progress event */
  int64_t total;      /* bytes, -1 if unknown */
  size_t layer_index; /* GR_PULL_EV_LAYER */
  size_t n_layers;
};

/* Called from any pull thread; calls are serialised by the pull.  */
typedef void (*gr_pull_progress_cb) (void *arg, const struct gr_pull_event *ev);

struct gr_pull_opts
{
  const char *platform;    /* "os/arch[/variant]"; NULL: the host's */
  unsigned max_concurrent; /* parallel layer downloads; 0: 3 */
  struct gr_registry_opts registry;
  gr_pull_progress_cb progress; /* may be NULL */
  void *progress_arg;
  bool allow_running_dockerd; /* skip the running-dockerd check (tests) */
  /* If set and true (read atomically), downloads stop at the next chunk
     and the pull fails with ECANCELED (e.g. the plugin's client left).  */
  const bool *cancel;
};

struct gr_pull_result
{
  char image_id[GR_DIGEST_LEN + 1];        /* "sha256:<hex>" */
  char manifest_digest[GR_DIGEST_LEN + 1]; /* what `docker images --digests` shows */
  char *reference;                         /* familiar "name:tag" or "name@digest" */
  bool up_to_date;                         /* the image was already there */
  size_t n_layers;
  size_t n_downloaded;
  int64_t bytes_downloaded;
};

void gr_pull_result_clear (struct gr_pull_result *res);

/* Pull REF into ROOT.  On failure nothing is registered for the image (no
   tag, no imagedb entry); layers fully downloaded and verified before the
   failure may stay in the layer store, as dockerd leaves them.  Refuses
   to run when a dockerd uses ROOT (unless allow_running_dockerd).  */
int gr_pull (struct gr_pull_result *res, struct gr_graphroot *root, const char *ref,
             const struct gr_pull_opts *opts, gr_error_t *err);

/* An event as a docker-API-style JSON message:
   {"status":..,"id":..,"progressDetail":{"current":..,"total":..}}.  */
json_t *gr_pull_event_json (const struct gr_pull_event *ev);

#endif

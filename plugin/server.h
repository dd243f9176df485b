/* The plugin's HTTP server: a unix socket, libmicrohttpd (one thread per
   connection, so a long Diff/ApplyDiff/Pull stream never blocks other
   requests), a route table, JSON bodies in and out, {"Err": msg} replies.

   Nothing here knows about graph drivers: each endpoint family lives in its
   own file (graphdriver.c, distribution.c, ...) as a "provider" that adds
   its routes when the server starts.

   Adding a provider (e.g. plugin/distribution.c):

     1. In the new file, write one handler per endpoint with the
        srv_handler_fn signature below and a table of routes:

          static const struct srv_route routes[] = {
            { "/Distribution.Pull", SRV_BODY_JSON, handle_pull },
            { "/Distribution.Images", SRV_BODY_JSON, handle_images },
          };
          static int
          distribution_start (struct srv *srv, const struct plugin_config *cfg,
                              gr_error_t *err)
          {
            return srv_add_routes (srv, routes, sizeof routes / sizeof routes[0], err);
          }
          const struct srv_provider distribution_provider = {
            "distribution", distribution_start, NULL,
          };

     2. Declare it below next to graphdriver_provider (one line; done
        for distribution_provider).
     3. Add `&distribution_provider,` to the `providers` table in
        plugin/main.c (one line) and the file to plugin_aufs_graphdriver_SOURCES.

   Handlers run in the connection's thread and may block.  A handler that
   needs the graph driver calls graphdriver_acquire()/graphdriver_release()
   (it fails with a clear error before GraphDriver.Init).  */
#ifndef GR_SERVER_H
#define GR_SERVER_H

#include "utils.h"

#include <jansson.h>
#include <stdbool.h>

struct srv;
struct srv_query;
struct gr_driver;

/* Command-line / environment settings, shared by every provider.  */
struct plugin_config
{
  const char *socket_path;
  const char *mount_method;  /* "auto", "aufs", "overlay" */
  const char *home_override; /* use this Home whatever GraphDriver.Init says; NULL */
  /* Where the last GraphDriver.Init is kept, so a restarted plugin (docker
     plugin disable/enable, a crash) serves again without dockerd sending
     Init, which it only does at its own start; NULL: not kept.  */
  const char *init_state;
};

/* ---- logging (stderr, "TIME LEVEL message") ---- */
enum srv_log_level
{
  SRV_LOG_DEBUG,
  SRV_LOG_INFO,
  SRV_LOG_WARN,
  SRV_LOG_ERROR,
};
void srv_log_set_level (enum srv_log_level level);
/* Parse "debug", "info", "warn"/"warning", "error".  */
int srv_log_parse_level (enum srv_log_level *out, const char *s, gr_error_t *err);
bool srv_log_enabled (enum srv_log_level level);
void srv_log (enum srv_log_level level, const char *fmt, ...) GR_PRINTF (2, 3);

/* ---- requests and replies ---- */

/* How a route takes its request body.  */
enum srv_body_kind
{
  /* The body is read whole (at most SRV_JSON_MAX bytes) and parsed as a
     JSON object; an empty body is {}.  Malformed JSON, a non-object or an
     oversized body is answered with an error before the handler runs.  */
  SRV_BODY_JSON,
  /* The body is streamed: the handler runs in its own thread and reads the
     raw body (Content-Length or chunked) from req->body_fd until EOF, while
     the connection thread feeds it.  If the handler returns before EOF the
     rest of the body is discarded.  If the client goes away before the end
     of the body, reads fail with ECONNRESET rather than ending cleanly, so
     a cut upload is never mistaken for a whole one.  */
  SRV_BODY_STREAM,
};

#define SRV_JSON_MAX (1024 * 1024)

struct srv_request
{
  const char *path; /* "/GraphDriver.Create" */
  json_t *json;     /* SRV_BODY_JSON: the parsed object (borrowed) */
  int body_fd;      /* SRV_BODY_STREAM: read end of the body, else -1 */
  void *route_data; /* srv_route.data */
  struct srv_query *query;
};

/* A query-string argument ("id" in ?id=x&parent=y), NULL if absent.  */
const char *srv_request_query (const struct srv_request *req, const char *key);

/* Optional producer for a streamed response body: runs in its own thread
   and writes the body to OUT_FD (a pipe).  Returning <0 before the first
   byte turns into a JSON error reply; after it, the connection is aborted
   (the client sees a truncated chunked body, never a clean end).  When the
   client goes away OUT_FD gets EPIPE: producers must stop on write errors.  */
typedef int (*srv_producer_fn) (void *arg, int out_fd, gr_error_t *err);

struct srv_reply
{
  /* A JSON reply (owned; the server decrefs it).  If the handler leaves
     both json and producer unset the reply is {}.  */
  json_t *json;
  unsigned int status; /* 0 = 200 */
  /* Or a streamed body.  */
  srv_producer_fn producer;
  void *producer_arg;
  void (*producer_arg_free) (void *arg); /* called after the producer ran, may be NULL */
  const char *content_type;              /* for the stream; default application/octet-stream */
};

/* A handler: fill REPLY and return 0, or return <0 with ERR set; the
   server answers 500 {"Err": msg} (gr_error_status EINVAL/ENOENT don't
   change that: dockerd treats every non-200 alike).  */
typedef int (*srv_handler_fn) (struct srv_reply *reply, const struct srv_request *req, gr_error_t *err);

struct srv_route
{
  const char *path; /* exact match, including the leading '/' */
  enum srv_body_kind body;
  srv_handler_fn handler;
  void *data; /* handed to the handler as req->route_data */
};

/* Register ROUTES (the array must outlive the server; typically static).
   Fails if a path is already registered.  */
int srv_add_routes (struct srv *srv, const struct srv_route *routes, size_t n, gr_error_t *err);

/* JSON helpers for handlers.  Each returns <0 with a message naming KEY.  */
/* A string member; *OUT is NULL when the key is missing or null.  */
int srv_json_get_string (const char **out, json_t *obj, const char *key, gr_error_t *err);
/* A layer ID member, validated with gr_id_validate; REQUIRED says if a
   missing/empty key is an error (otherwise *OUT = NULL).  */
int srv_json_get_id (const char **out, json_t *obj, const char *key, bool required, gr_error_t *err);

/* ---- providers ---- */
struct srv_provider
{
  const char *name;
  /* Called once before the server starts listening: register routes.  */
  int (*start) (struct srv *srv, const struct plugin_config *cfg, gr_error_t *err);
  /* Called after the server stopped (no request in flight), in reverse
     registration order; may be NULL.  */
  void (*stop) (void);
};

extern const struct srv_provider graphdriver_provider;  /* plugin/graphdriver.c */
extern const struct srv_provider distribution_provider; /* plugin/distribution.c */

/* The driver opened by the last GraphDriver.Init, with a reference held
   until graphdriver_release (a concurrent re-Init with another Home frees
   the old driver only once every user released it).  NULL + ERR before
   Init.  */
struct gr_driver *graphdriver_acquire (gr_error_t *err);
void graphdriver_release (struct gr_driver *d);

/* ---- the server ---- */
struct srv *srv_new (const struct plugin_config *cfg);
/* Bind the unix socket (creating its directory, replacing a stale socket,
   mode 0660) and start serving.  */
int srv_start (struct srv *srv, gr_error_t *err);
/* Stop accepting, finish or abort in-flight requests, remove the socket.  */
void srv_stop (struct srv *srv);
void srv_free (struct srv *srv);

#endif

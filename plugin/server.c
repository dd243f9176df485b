/* The plugin's HTTP server on a unix socket (see server.h).  */
#include "config.h"

#include "server.h"

#include "fsutil.h"

#include <assert.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/un.h>
#include <time.h>

#define JSON_CONTENT_TYPE "application/vnd.docker.plugins.v1+json"

/* Idle clients cannot starve the server: a connection that sends no
   complete request header for this long (keep-alive idle, or headers
   trickling in) is closed; once a request's headers are in, it has no
   time limit (a Diff or ApplyDiff may stream for long).  */
#define SRV_IDLE_TIMEOUT_S 30u
/* Connections served at once (a thread each); the socket's backlog.  */
#define SRV_MAX_CONNECTIONS 4096u
#define SRV_LISTEN_BACKLOG 4096

/* ---------------------------------------------------------------- logging */

static enum srv_log_level log_level = SRV_LOG_INFO;

void
srv_log_set_level (enum srv_log_level level)
{
  log_level = level;
}

bool
srv_log_enabled (enum srv_log_level level)
{
  return level >= log_level;
}

int
srv_log_parse_level (enum srv_log_level *out, const char *s, gr_error_t *err)
{
  static const struct
  {
    const char *name;
    enum srv_log_level level;
  } names[] = {
    { "debug", SRV_LOG_DEBUG },  { "info", SRV_LOG_INFO },   { "warn", SRV_LOG_WARN },
    { "warning", SRV_LOG_WARN }, { "error", SRV_LOG_ERROR },
  };
  for (size_t i = 0; i < sizeof (names) / sizeof (names[0]); i++)
    if (strcasecmp (s, names[i].name) == 0)
      {
        *out = names[i].level;
        return 0;
      }
  return gr_make_error (err, EINVAL, "unknown log level `%s` (debug, info, warn, error)", s);
}

static void GR_PRINTF (2, 0) srv_vlog (enum srv_log_level level, const char *fmt, va_list ap)
{
  static const char *const level_names[] = { "debug", "info", "warn", "error" };
  cleanup_buf struct gr_buf line = { 0 };
  struct timespec ts;
  struct tm tm;
  char stamp[64];

  if (!srv_log_enabled (level))
    return;
  clock_gettime (CLOCK_REALTIME, &ts);
  gmtime_r (&ts.tv_sec, &tm);
  strftime (stamp, sizeof (stamp), "%Y-%m-%dT%H:%M:%S", &tm);
  gr_buf_printf (&line, "%s.%03ldZ %-5s ", stamp, ts.tv_nsec / 1000000, level_names[level]);
  {
    va_list aq;
    char *msg = NULL;
    va_copy (aq, ap);
    if (vasprintf (&msg, fmt, aq) < 0)
      msg = NULL;
    va_end (aq);
    gr_buf_puts (&line, msg ? msg : fmt);
    free (msg);
  }
  while (line.len > 0 && line.data[line.len - 1] == '\n')
    line.data[--line.len] = '\0';
  gr_buf_puts (&line, "\n");
  /* One write per line so concurrent requests never interleave.  */
  if (write (STDERR_FILENO, line.data, line.len) < 0)
    (void)0;
}

void
srv_log (enum srv_log_level level, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  srv_vlog (level, fmt, ap);
  va_end (ap);
}

static void GR_PRINTF (2, 0) mhd_logger (void *cls, const char *fmt, va_list ap)
{
  srv_vlog (SRV_LOG_DEBUG, fmt, ap);
}

/* ------------------------------------------------------------- the server */

struct srv
{
  const struct plugin_config *cfg;
  const struct srv_route **routes;
  size_t n_routes;
  struct MHD_Daemon *mhd;
  int listen_fd;
  bool socket_created;
};

struct srv_query
{
  size_t n;
  char **keys;
  char **values;
};

/* The state of one request, from its headers to its completion.  */
struct conn_state
{
  struct srv *srv;
  const struct srv_route *route;
  char *path;
  struct timespec start;
  unsigned int status;    /* what we answered, for the log line */
  bool responded;         /* a response was queued */
  unsigned int early_err; /* 404/405: answer once the body is discarded */
  char *early_msg;

  /* SRV_BODY_JSON */
  struct gr_buf body;

  /* SRV_BODY_STREAM: a thread runs the handler, reading the pipe.  */
  struct handler_job *job;

  struct srv_query query;
};

/* A handler running in its own thread (SRV_BODY_STREAM).  */
struct handler_job
{
  const struct srv_route *route;
  struct srv_request req;
  struct srv_reply reply;
  gr_error_t err;
  int ret;
  int write_fd;         /* the connection feeds the body here; -1 once closed */
  pthread_mutex_t lock; /* guards req.body_fd against job_abort */
  pthread_t thread;
  bool joined;
};

/* A streamed response body.  */
struct producer_job
{
  srv_producer_fn fn;
  void *arg;
  void (*arg_free) (void *);
  int read_fd;
  int write_fd; /* the producer's end, closed by producer_main */
  pthread_t thread;
  bool joined;
  int ret;
  gr_error_t err;
  char *path; /* for the log */
};

struct srv *
srv_new (const struct plugin_config *cfg)
{
  struct srv *s = xzalloc (sizeof (*s));
  s->cfg = cfg;
  s->listen_fd = -1;
  return s;
}

void
srv_free (struct srv *s)
{
  if (s == NULL)
    return;
  srv_stop (s);
  free (s->routes);
  free (s);
}

int
srv_add_routes (struct srv *s, const struct srv_route *routes, size_t n, gr_error_t *err)
{
  for (size_t i = 0; i < n; i++)
    {
      assert (routes[i].path && routes[i].path[0] == '/' && routes[i].handler);
      for (size_t j = 0; j < s->n_routes; j++)
        if (strcmp (s->routes[j]->path, routes[i].path) == 0)
          return gr_make_error (err, EEXIST, "route `%s` registered twice", routes[i].path);
      s->routes = xrealloc (s->routes, (s->n_routes + 1) * sizeof (*s->routes));
      s->routes[s->n_routes++] = &routes[i];
    }
  return 0;
}

static const struct srv_route *
find_route (struct srv *s, const char *path)
{
  for (size_t i = 0; i < s->n_routes; i++)
    if (strcmp (s->routes[i]->path, path) == 0)
      return s->routes[i];
  return NULL;
}

const char *
srv_request_query (const struct srv_request *req, const char *key)
{
  if (req->query == NULL)
    return NULL;
  for (size_t i = 0; i < req->query->n; i++)
    if (strcmp (req->query->keys[i], key) == 0)
      return req->query->values[i];
  return NULL;
}

static enum MHD_Result
collect_query (void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
  struct srv_query *q = cls;
  q->keys = xrealloc (q->keys, (q->n + 1) * sizeof (char *));
  q->values = xrealloc (q->values, (q->n + 1) * sizeof (char *));
  q->keys[q->n] = xstrdup (key);
  q->values[q->n] = value ? xstrdup (value) : NULL;
  q->n++;
  return MHD_YES;
}

static void
query_free (struct srv_query *q)
{
  for (size_t i = 0; i < q->n; i++)
    {
      free (q->keys[i]);
      free (q->values[i]);
    }
  free (q->keys);
  free (q->values);
}

/* URL unescaping (path and query string): %XX as usual, except that %00
   stays as it is.  A decoded NUL would silently cut a C string short:
   `?id=abc%00../x` must not become `abc` (MHD's own unescaper decodes it);
   kept literally, the `%` makes the ID invalid and the request fails.  */
static int
hex_digit (char c)
{
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

static size_t
unescape_no_nul (void *cls, struct MHD_Connection *conn, char *s)
{
  char *w = s;
  for (const char *r = s; *r;)
    {
      int hi, lo;
      if (r[0] == '%' && (hi = hex_digit (r[1])) >= 0 && (lo = hex_digit (r[2])) >= 0 && (hi | lo) != 0)
        {
          *w++ = (char) (hi * 16 + lo);
          r += 3;
        }
      else
        *w++ = *r++;
    }
  *w = '\0';
  return (size_t) (w - s);
}

/* MSG as valid UTF-8 (json_string refuses anything else): bytes that are
   not part of a well-formed sequence become \xNN.  A query-string ID such
   as %FF ends up in error messages.  */
static char *
utf8_sanitize (const char *msg)
{
  cleanup_buf struct gr_buf b = { 0 };
  const unsigned char *p = (const unsigned char *) msg;
  while (*p)
    {
      size_t n = 0;
      if (*p < 0x80)
        n = 1;
      else if (*p >= 0xc2 && *p <= 0xdf)
        n = 2;
      else if (*p >= 0xe0 && *p <= 0xef)
        n = 3;
      else if (*p >= 0xf0 && *p <= 0xf4)
        n = 4;
      for (size_t i = 1; i < n; i++)
        if ((p[i] & 0xc0) != 0x80)
          n = 0;
      /* overlong 3/4-byte forms, surrogates, > U+10FFFF */
      if ((n == 3 && ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0)))
          || (n == 4 && ((p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))))
        n = 0;
      if (n == 0)
        {
          gr_buf_printf (&b, "\\x%02X", *p);
          p++;
        }
      else
        {
          gr_buf_append (&b, p, n);
          p += n;
        }
    }
  return gr_buf_steal (&b);
}

/* ------------------------------------------------------------ JSON helpers */

int
srv_json_get_string (const char **out, json_t *obj, const char *key, gr_error_t *err)
{
  json_t *v = json_object_get (obj, key);
  *out = NULL;
  if (v == NULL || json_is_null (v))
    return 0;
  if (!json_is_string (v))
    return gr_make_error (err, EINVAL, "`%s` must be a string", key);
  if (strlen (json_string_value (v)) != json_string_length (v))
    return gr_make_error (err, EINVAL, "`%s` contains a NUL byte", key);
  *out = json_string_value (v);
  return 0;
}

int
srv_json_get_id (const char **out, json_t *obj, const char *key, bool required, gr_error_t *err)
{
  const char *id;
  if (srv_json_get_string (&id, obj, key, err) < 0)
    return -1;
  if (id == NULL || id[0] == '\0')
    {
      *out = NULL;
      if (required)
        return gr_make_error (err, EINVAL, "missing `%s`", key);
      return 0;
    }
  if (gr_id_validate (id, err) < 0)
    return gr_error_wrap (err, "`%s`", key);
  *out = id;
  return 0;
}

/* ---------------------------------------------------------------- replies */

static double
elapsed_ms (const struct timespec *start)
{
  struct timespec now;
  clock_gettime (CLOCK_MONOTONIC, &now);
  return (now.tv_sec - start->tv_sec) * 1e3 + (now.tv_nsec - start->tv_nsec) / 1e6;
}

static enum MHD_Result
queue_json (struct MHD_Connection *conn, struct conn_state *cs, unsigned int status, json_t *body)
{
  char *text = json_dumps (body, JSON_COMPACT | JSON_ENCODE_ANY);
  size_t len;
  struct MHD_Response *resp;
  enum MHD_Result r;

  if (text == NULL)
    {
      text = xstrdup ("{\"Err\":\"cannot encode the reply\"}");
      status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
  len = strlen (text);
  text = xrealloc (text, len + 2);
  text[len++] = '\n';
  text[len] = '\0';
  resp = MHD_create_response_from_buffer (len, text, MHD_RESPMEM_MUST_FREE);
  if (resp == NULL)
    {
      free (text);
      return MHD_NO;
    }
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE, JSON_CONTENT_TYPE);
  r = MHD_queue_response (conn, status, resp);
  MHD_destroy_response (resp);
  cs->status = status;
  cs->responded = true;
  return r;
}

static enum MHD_Result
queue_error (struct MHD_Connection *conn, struct conn_state *cs, unsigned int status, const char *msg)
{
  cleanup_free char *clean = utf8_sanitize (msg ? msg : "unknown error");
  json_t *body = json_pack ("{s:s}", "Err", clean);
  enum MHD_Result r;
  srv_log (SRV_LOG_ERROR, "%s: %u %s", cs->path, status, clean);
  r = queue_json (conn, cs, status, body);
  json_decref (body);
  return r;
}

/* The text of a failed request's reply: the error's message plus the
   system's reason when its errno adds one.  Driver messages name the
   object and the operation (`open directory \`diff/x\``) but not why it
   failed; without the reason a user cannot tell a missing dir from a
   symlink or a permission problem.  Errors the driver raises itself with
   a message that already says it (EINVAL, EBUSY, EEXIST, ENOTSUP, a too
   deep parent chain, "does not exist") are left as they are.  */
static char *
error_text (const gr_error_t *err)
{
  const char *msg = gr_error_msg (err);
  int st = gr_error_status (err);
  char buf[256];
  if (st <= 0 || st == EINVAL || st == EBUSY || st == EEXIST || st == ENOTSUP
      || (st == ELOOP && strstr (msg, "parent")) || (st == ENOENT && strstr (msg, "does not exist")))
    return xstrdup (msg);
  const char *reason = strerror_r (st, buf, sizeof buf);
  if (strcasestr (msg, reason))
    return xstrdup (msg);
  return xasprintf ("%s: %s", msg, reason);
}

static void
reply_clear (struct srv_reply *reply)
{
  json_decref (reply->json);
  reply->json = NULL;
  if (reply->producer_arg_free && reply->producer_arg)
    reply->producer_arg_free (reply->producer_arg);
  reply->producer_arg = NULL;
  reply->producer = NULL;
}

static void *
producer_main (void *arg)
{
  struct producer_job *pj = arg;
  pj->ret = pj->fn (pj->arg, pj->write_fd, &pj->err);
  close (pj->write_fd);
  return NULL;
}

/* Wait for the producer; LOG says whether a failure is worth a line (not
   when it becomes the JSON error reply, which is logged anyway).  */
static void
producer_join (struct producer_job *pj, bool log)
{
  if (pj->joined)
    return;
  pthread_join (pj->thread, NULL);
  pj->joined = true;
  if (!log)
    return;
  if (pj->ret < 0 && gr_error_status (&pj->err) == EPIPE)
    srv_log (SRV_LOG_WARN, "%s: the client stopped reading the reply", pj->path);
  else if (pj->ret < 0)
    srv_log (SRV_LOG_ERROR, "%s: streamed reply aborted: %s", pj->path, gr_error_msg (&pj->err));
}

static void
producer_free (void *cls)
{
  struct producer_job *pj = cls;
  if (pj->read_fd >= 0)
    close (pj->read_fd); /* the producer now gets EPIPE if still writing */
  pj->read_fd = -1;
  producer_join (pj, true);
  if (pj->arg_free)
    pj->arg_free (pj->arg);
  gr_error_release (&pj->err);
  free (pj->path);
  free (pj);
}

static ssize_t
producer_read (void *cls, uint64_t pos, char *buf, size_t max)
{
  struct producer_job *pj = cls;
  for (;;)
    {
      ssize_t n = read (pj->read_fd, buf, max);
      if (n > 0)
        return n;
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        {
          srv_log (SRV_LOG_ERROR, "%s: read streamed reply: %s", pj->path, strerror (errno));
          return MHD_CONTENT_READER_END_WITH_ERROR;
        }
      producer_join (pj, true);
      return pj->ret < 0 ? MHD_CONTENT_READER_END_WITH_ERROR : MHD_CONTENT_READER_END_OF_STREAM;
    }
}

/* Answer with a body streamed by REPLY->producer.  Ownership of the
   producer's argument moves here.  */
static enum MHD_Result
queue_stream (struct MHD_Connection *conn, struct conn_state *cs, struct srv_reply *reply)
{
  struct producer_job *pj = xzalloc (sizeof (*pj));
  struct MHD_Response *resp;
  struct pollfd pfd;
  int fds[2];
  enum MHD_Result r;

  pj->fn = reply->producer;
  pj->arg = gr_steal (reply->producer_arg);
  pj->arg_free = reply->producer_arg_free;
  pj->path = xstrdup (cs->path);
  reply->producer = NULL;

  if (pipe2 (fds, O_CLOEXEC) < 0)
    {
      int e = errno;
      if (pj->arg_free)
        pj->arg_free (pj->arg);
      free (pj->path);
      free (pj);
      return queue_error (conn, cs, MHD_HTTP_INTERNAL_SERVER_ERROR, strerror (e));
    }
  /* A bigger pipe means fewer wakeups for large tars.  */
  fcntl (fds[1], F_SETPIPE_SZ, 1024 * 1024);
  pj->read_fd = fds[0];
  pj->write_fd = fds[1];
  if (pthread_create (&pj->thread, NULL, producer_main, pj) != 0)
    {
      close (fds[1]);
      pj->joined = true;
      pj->ret = 0;
      producer_free (pj);
      return queue_error (conn, cs, MHD_HTTP_INTERNAL_SERVER_ERROR, "cannot start a thread");
    }

  /* Wait for the first byte, or for the end: a producer that fails before
     writing anything is answered as a normal JSON error.  */
  pfd.fd = pj->read_fd;
  pfd.events = POLLIN;
  while (poll (&pfd, 1, -1) < 0 && errno == EINTR)
    ;
  if (!(pfd.revents & POLLIN))
    {
      producer_join (pj, false);
      if (pj->ret < 0)
        {
          cleanup_free char *msg = error_text (&pj->err);
          producer_free (pj);
          return queue_error (conn, cs, MHD_HTTP_INTERNAL_SERVER_ERROR, msg);
        }
    }

  resp = MHD_create_response_from_callback (MHD_SIZE_UNKNOWN, 256 * 1024, producer_read, pj, producer_free);
  if (resp == NULL)
    {
      producer_free (pj);
      return MHD_NO;
    }
  MHD_add_response_header (resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                           reply->content_type ? reply->content_type : "application/octet-stream");
  r = MHD_queue_response (conn, MHD_HTTP_OK, resp);
  MHD_destroy_response (resp);
  cs->status = MHD_HTTP_OK;
  cs->responded = true;
  return r;
}

/* Turn a handler's result into the response.  */
static enum MHD_Result
queue_result (struct MHD_Connection *conn, struct conn_state *cs, int ret, struct srv_reply *reply,
              gr_error_t *err)
{
  enum MHD_Result r;
  if (ret < 0)
    {
      cleanup_free char *text = error_text (err);
      reply_clear (reply);
      return queue_error (conn, cs, MHD_HTTP_INTERNAL_SERVER_ERROR, text);
    }
  if (reply->producer)
    {
      r = queue_stream (conn, cs, reply);
      reply_clear (reply);
      return r;
    }
  if (reply->json == NULL)
    reply->json = json_object ();
  r = queue_json (conn, cs, reply->status ? reply->status : MHD_HTTP_OK, reply->json);
  reply_clear (reply);
  return r;
}

/* ------------------------------------------------------ streamed bodies */

static void *
handler_main (void *arg)
{
  struct handler_job *job = arg;
  job->ret = job->route->handler (&job->reply, &job->req, &job->err);
  /* Unblock the feeder if the handler stopped before EOF.  */
  pthread_mutex_lock (&job->lock);
  close (job->req.body_fd);
  job->req.body_fd = -1;
  pthread_mutex_unlock (&job->lock);
  return NULL;
}

static void
job_close_write (struct handler_job *job)
{
  if (job->write_fd >= 0)
    close (job->write_fd);
  job->write_fd = -1;
}

/* The client went away before the end of the body: make the handler's
   reads fail instead of ending cleanly, so that a cut upload is never taken
   for a whole one.  An AF_UNIX stream socket closed while unread data waits
   in its own queue leaves its peer with ECONNRESET: queue a byte on the
   feeder's end, then close it.  */
static void
job_abort (struct handler_job *job)
{
  pthread_mutex_lock (&job->lock);
  if (job->req.body_fd >= 0 && job->write_fd >= 0)
    {
      if (send (job->req.body_fd, "x", 1, MSG_DONTWAIT | MSG_NOSIGNAL) < 0)
        srv_log (SRV_LOG_DEBUG, "%s: abort: %s", job->req.path, strerror (errno));
    }
  pthread_mutex_unlock (&job->lock);
  job_close_write (job);
}

static void
job_join (struct handler_job *job)
{
  job_close_write (job);
  if (!job->joined)
    pthread_join (job->thread, NULL);
  job->joined = true;
}

static int
job_start (struct handler_job **out, struct conn_state *cs, gr_error_t *err)
{
  struct handler_job *job = xzalloc (sizeof (*job));
  int bufsize = 1024 * 1024;
  int fds[2];

  /* A socketpair rather than a pipe: see job_abort.  */
  if (socketpair (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) < 0)
    {
      free (job);
      return gr_make_error (err, errno, "socketpair");
    }
  setsockopt (fds[1], SOL_SOCKET, SO_SNDBUF, &bufsize, sizeof (bufsize));
  pthread_mutex_init (&job->lock, NULL);
  job->req.path = cs->path;
  job->req.body_fd = fds[0];
  job->req.query = &cs->query;
  job->route = cs->route;
  job->req.route_data = cs->route->data;
  job->write_fd = fds[1];
  if (pthread_create (&job->thread, NULL, handler_main, job) != 0)
    {
      close (fds[0]);
      close (fds[1]);
      free (job);
      return gr_make_error (err, EAGAIN, "cannot start a thread");
    }
  *out = job;
  return 0;
}

static void
job_free (struct handler_job *job)
{
  if (job == NULL)
    return;
  job_join (job);
  reply_clear (&job->reply);
  gr_error_release (&job->err);
  pthread_mutex_destroy (&job->lock);
  free (job);
}

/* Feed an upload chunk to the handler thread.  Once the handler stopped
   reading (EPIPE) the rest of the body is discarded.  */
static void
job_feed (struct handler_job *job, const char *data, size_t len)
{
  while (len > 0 && job->write_fd >= 0)
    {
      ssize_t w = send (job->write_fd, data, len, MSG_NOSIGNAL);
      if (w < 0)
        {
          if (errno == EINTR)
            continue;
          job_close_write (job);
          return;
        }
      data += w;
      len -= (size_t)w;
    }
}

/* ------------------------------------------------------ request handling */

static void
conn_state_free (struct conn_state *cs)
{
  if (cs == NULL)
    return;
  job_free (cs->job);
  gr_buf_free (&cs->body);
  query_free (&cs->query);
  free (cs->early_msg);
  free (cs->path);
  free (cs);
}

static enum MHD_Result
run_json_route (struct MHD_Connection *conn, struct conn_state *cs)
{
  cleanup_error gr_error_t err = NULL;
  struct srv_reply reply = { 0 };
  struct srv_request req = { 0 };
  json_error_t jerr;
  json_t *body;
  int ret;

  if (cs->body.len == 0)
    body = json_object ();
  else
    {
      body = json_loadb (cs->body.data, cs->body.len, 0, &jerr);
      if (body == NULL)
        {
          cleanup_free char *msg = xasprintf ("malformed JSON request body: %s (line %d, column %d)",
                                              jerr.text, jerr.line, jerr.column);
          return queue_error (conn, cs, MHD_HTTP_BAD_REQUEST, msg);
        }
      if (!json_is_object (body))
        {
          json_decref (body);
          return queue_error (conn, cs, MHD_HTTP_BAD_REQUEST,
                              "malformed request body: a JSON object is expected");
        }
    }
  req.path = cs->path;
  req.json = body;
  req.body_fd = -1;
  req.route_data = cs->route->data;
  req.query = &cs->query;
  ret = cs->route->handler (&reply, &req, &err);
  json_decref (body);
  return queue_result (conn, cs, ret, &reply, &err);
}

static enum MHD_Result
access_handler (void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                const char *version, const char *upload_data, size_t *upload_data_size, void **con_cls)
{
  struct srv *s = cls;
  struct conn_state *cs = *con_cls;

  if (cs == NULL)
    {
      /* Headers are in, no body yet: no idle limit while it runs.  */
      MHD_set_connection_option (conn, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
      cs = xzalloc (sizeof (*cs));
      cs->srv = s;
      cs->path = xstrdup (url);
      clock_gettime (CLOCK_MONOTONIC, &cs->start);
      *con_cls = cs;
      MHD_get_connection_values (conn, MHD_GET_ARGUMENT_KIND, collect_query, &cs->query);
      cs->route = find_route (s, url);
      if (cs->route == NULL)
        {
          cs->early_err = MHD_HTTP_NOT_FOUND;
          cs->early_msg = xasprintf ("unknown endpoint `%s`", url);
        }
      else if (strcmp (method, MHD_HTTP_METHOD_POST) != 0)
        {
          cs->early_err = MHD_HTTP_METHOD_NOT_ALLOWED;
          cs->early_msg = xasprintf ("%s: method %s not allowed, use POST", url, method);
        }
      else if (cs->route->body == SRV_BODY_STREAM)
        {
          cleanup_error gr_error_t err = NULL;
          if (job_start (&cs->job, cs, &err) < 0)
            {
              cs->early_err = MHD_HTTP_INTERNAL_SERVER_ERROR;
              cs->early_msg = xstrdup (gr_error_msg (&err));
            }
        }
      return MHD_YES;
    }

  if (*upload_data_size > 0)
    {
      size_t len = *upload_data_size;
      *upload_data_size = 0;
      if (cs->early_err)
        return MHD_YES; /* discard */
      if (cs->job)
        {
          job_feed (cs->job, upload_data, len);
          return MHD_YES;
        }
      if (cs->body.len + len > SRV_JSON_MAX)
        {
          /* Read and drop the rest, then answer: MHD cannot reply before
             the body is consumed.  */
          cs->early_err = MHD_HTTP_CONTENT_TOO_LARGE;
          cs->early_msg = xasprintf ("%s: request body larger than %d bytes", url, SRV_JSON_MAX);
          gr_buf_free (&cs->body);
          return MHD_YES;
        }
      gr_buf_append (&cs->body, upload_data, len);
      return MHD_YES;
    }

  /* The whole body is in.  */
  if (cs->early_err)
    return queue_error (conn, cs, cs->early_err, cs->early_msg);
  if (cs->job)
    {
      struct handler_job *job = cs->job;
      enum MHD_Result r;
      job_join (job);
      r = queue_result (conn, cs, job->ret, &job->reply, &job->err);
      return r;
    }
  return run_json_route (conn, cs);
}

static void
request_completed (void *cls, struct MHD_Connection *conn, void **con_cls,
                   enum MHD_RequestTerminationCode toe)
{
  struct conn_state *cs = *con_cls;
  if (cs == NULL)
    return;
  if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
    {
      /* A client that closes its end right after reading the reply shows
         up here too: only a request that got no reply is worth a warning.  */
      enum srv_log_level level = cs->responded ? SRV_LOG_DEBUG : SRV_LOG_WARN;
      static const char *const reasons[] = {
        "completed", "with an error", "timed out", "at shutdown", "read error", "client abort",
      };
      srv_log (level, "%s %u: request ended %s after %.1f ms", cs->path, cs->status,
               (unsigned)toe < sizeof (reasons) / sizeof (reasons[0]) ? reasons[toe] : "abnormally",
               elapsed_ms (&cs->start));
    }
  else
    srv_log (SRV_LOG_DEBUG, "%s %u %.1f ms", cs->path, cs->status, elapsed_ms (&cs->start));
  if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK && cs->job && !cs->job->joined)
    {
      job_abort (cs->job);
      job_join (cs->job);
      if (cs->job->ret < 0)
        srv_log (SRV_LOG_WARN, "%s: after the client went away: %s", cs->path, gr_error_msg (&cs->job->err));
    }
  conn_state_free (cs);
  *con_cls = NULL;
  /* Back to waiting for the next request on a keep-alive connection.  */
  MHD_set_connection_option (conn, MHD_CONNECTION_OPTION_TIMEOUT, SRV_IDLE_TIMEOUT_S);
}

/* ----------------------------------------------------------------- socket */

static int
make_socket_dir (const char *path, gr_error_t *err)
{
  cleanup_free char *dir = xstrdup (path);
  char *slash = strrchr (dir, '/');
  if (slash == NULL || slash == dir)
    return 0;
  *slash = '\0';
  if (dir[0] == '/')
    {
      if (gr_mkdir_p_at (AT_FDCWD, dir, 0755, err) < 0)
        return gr_error_wrap (err, "socket directory");
    }
  else if (gr_mkdir_p_at (AT_FDCWD, dir, 0755, err) < 0)
    return gr_error_wrap (err, "socket directory");
  return 0;
}

/* Remove PATH if it is a socket nobody listens on; refuse to steal a live
   one or to delete anything that is not a socket.  */
static int
remove_stale_socket (const char *path, const struct sockaddr_un *addr, gr_error_t *err)
{
  struct stat st;
  cleanup_close int fd = -1;

  if (lstat (path, &st) < 0)
    {
      if (errno == ENOENT)
        return 0;
      return gr_make_error (err, errno, "stat `%s`", path);
    }
  if (!S_ISSOCK (st.st_mode))
    return gr_make_error (err, EEXIST, "`%s` exists and is not a socket", path);
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return gr_make_error (err, errno, "socket");
  if (connect (fd, (const struct sockaddr *)addr, sizeof (*addr)) == 0)
    return gr_make_error (err, EADDRINUSE, "`%s` is in use by another running server", path);
  srv_log (SRV_LOG_INFO, "removing stale socket %s", path);
  if (unlink (path) < 0 && errno != ENOENT)
    return gr_make_error (err, errno, "remove stale socket `%s`", path);
  return 0;
}

static int
open_listen_socket (struct srv *s, gr_error_t *err)
{
  const char *path = s->cfg->socket_path;
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  cleanup_close int fd = -1;
  mode_t old_umask;
  int r;

  if (strlen (path) >= sizeof (addr.sun_path))
    return gr_make_error (err, ENAMETOOLONG, "socket path `%s` is too long", path);
  memcpy (addr.sun_path, path, strlen (path) + 1);
  if (make_socket_dir (path, err) < 0)
    return -1;
  if (remove_stale_socket (path, &addr, err) < 0)
    return -1;
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0)
    return gr_make_error (err, errno, "socket");
  /* Created 0660 from the start: no window where it is wider.  */
  old_umask = umask (0117);
  r = bind (fd, (struct sockaddr *)&addr, sizeof (addr));
  umask (old_umask);
  if (r < 0)
    return gr_make_error (err, errno, "bind `%s`", path);
  s->socket_created = true;
  if (chmod (path, 0660) < 0)
    return gr_make_error (err, errno, "chmod `%s`", path);
  if (listen (fd, SRV_LISTEN_BACKLOG) < 0)
    return gr_make_error (err, errno, "listen `%s`", path);
  s->listen_fd = gr_steal_fd (fd);
  return 0;
}

/* Each connection holds a socket and, while it streams, a few more fds:
   take the hard limit so that the connection limit, not EMFILE, bounds
   them.  */
static void
raise_fd_limit (void)
{
  struct rlimit rl;
  if (getrlimit (RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max)
    {
      rl.rlim_cur = rl.rlim_max;
      if (setrlimit (RLIMIT_NOFILE, &rl) < 0)
        srv_log (SRV_LOG_DEBUG, "raise the open files limit: %s", strerror (errno));
    }
}

int
srv_start (struct srv *s, gr_error_t *err)
{
  unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL
                       | MHD_USE_ITC | MHD_USE_ERROR_LOG;

  raise_fd_limit ();
  if (open_listen_socket (s, err) < 0)
    {
      if (s->socket_created)
        unlink (s->cfg->socket_path);
      s->socket_created = false;
      return -1;
    }
  s->mhd = MHD_start_daemon (flags, 0, NULL, NULL, access_handler, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger,
                             s, MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_NOTIFY_COMPLETED,
                             request_completed, s, MHD_OPTION_UNESCAPE_CALLBACK, unescape_no_nul, s,
                             MHD_OPTION_CONNECTION_TIMEOUT, SRV_IDLE_TIMEOUT_S, MHD_OPTION_CONNECTION_LIMIT,
                             SRV_MAX_CONNECTIONS,
                             MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)(256 * 1024), MHD_OPTION_END);
  if (s->mhd == NULL)
    {
      close (s->listen_fd);
      s->listen_fd = -1;
      unlink (s->cfg->socket_path);
      s->socket_created = false;
      return gr_make_error (err, EIO, "cannot start the HTTP server on `%s`", s->cfg->socket_path);
    }
  /* MHD owns (and closes) the listening socket from now on.  */
  s->listen_fd = -1;
  srv_log (SRV_LOG_INFO, "listening on %s", s->cfg->socket_path);
  return 0;
}

void
srv_stop (struct srv *s)
{
  if (s->mhd)
    {
      /* Stop accepting first, then end the connections (waiting for the
         handlers that are running).  */
      MHD_socket fd = MHD_quiesce_daemon (s->mhd);
      /* Once quiesced, the listening socket is ours again.  */
      if (fd != MHD_INVALID_SOCKET)
        s->listen_fd = fd;
      MHD_stop_daemon (s->mhd);
      s->mhd = NULL;
    }
  if (s->listen_fd >= 0)
    close (s->listen_fd);
  s->listen_fd = -1;
  if (s->socket_created)
    {
      if (unlink (s->cfg->socket_path) < 0 && errno != ENOENT)
        srv_log (SRV_LOG_WARN, "remove socket %s: %s", s->cfg->socket_path, strerror (errno));
      s->socket_created = false;
    }
}

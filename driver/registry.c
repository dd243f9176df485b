/* The HTTP side of the registry client (libcurl): ping and scheme choice,
   Bearer and Basic auth, manual redirects, retries, Range resume, digest
   verification.  */
#include "config.h"

#include "digest.h"
#include "registry.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <netdb.h>
#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <string.h>
#include <time.h>

#define MAX_REDIRECTS 10
#define MAX_TRIES 5
#define ERRBODY_MAX (64 * 1024)
#define TOKEN_MAX (1024 * 1024)
#define USER_AGENT "imgmigrate/" PACKAGE_VERSION " (graphroot)"

static const char *const manifest_accept
    = "Accept: " GR_MT_OCI_INDEX ", " GR_MT_DOCKER_LIST ", " GR_MT_OCI_MANIFEST ", " GR_MT_DOCKER_MANIFEST;

enum auth_kind
{
  AUTH_NONE,
  AUTH_BASIC,
  AUTH_BEARER,
};

struct gr_registry
{
  char *host;   /* host[:port] to talk to */
  char *domain; /* the reference's domain (credential lookup) */
  char *path;   /* repository path */
  char *base;   /* "https://host" after ping */
  bool insecure;
  bool verbose;
  char *user;
  char *pass;
  char *identity_token; /* an OAuth2 refresh token (docker login's identitytoken) */

  pthread_mutex_t lock; /* the auth state below */
  enum auth_kind auth;
  char *realm;
  char *service;
  char *token;
  unsigned token_gen;

  CURLSH *share;
  pthread_mutex_t share_locks[CURL_LOCK_DATA_LAST];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;

static void
curl_init_once (void)
{
  curl_global_init (CURL_GLOBAL_ALL);
}

static void
share_lock (CURL *h, curl_lock_data data, curl_lock_access access, void *arg)
{
  struct gr_registry *r = arg;
  pthread_mutex_lock (&r->share_locks[data]);
}

static void
share_unlock (CURL *h, curl_lock_data data, void *arg)
{
  struct gr_registry *r = arg;
  pthread_mutex_unlock (&r->share_locks[data]);
}

/* 127.0.0.0/8, ::1, localhost: insecure by default, as dockerd.  */
static bool
host_is_loopback (const char *host)
{
  cleanup_free char *h = NULL;
  if (host[0] == '[')
    {
      const char *close = strchr (host, ']');
      h = xstrndup (host + 1, close ? (size_t)(close - host - 1) : strlen (host + 1));
    }
  else
    {
      const char *colon = strchr (host, ':');
      h = colon ? xstrndup (host, (size_t)(colon - host)) : xstrdup (host);
    }
  if (strcmp (h, "localhost") == 0)
    return true;
  struct in_addr a4;
  struct in6_addr a6;
  if (inet_pton (AF_INET, h, &a4) == 1)
    return (ntohl (a4.s_addr) >> 24) == 127;
  if (inet_pton (AF_INET6, h, &a6) == 1)
    return IN6_IS_ADDR_LOOPBACK (&a6);
  /* A name: insecure if it resolves to a loopback address, as dockerd's
     isSecureIndex does with its default insecure CIDR 127.0.0.0/8.  */
  struct addrinfo hints = { .ai_socktype = SOCK_STREAM };
  struct addrinfo *res = NULL;
  bool loop = false;
  if (getaddrinfo (h, NULL, &hints, &res) != 0)
    return false;
  for (struct addrinfo *ai = res; ai && !loop; ai = ai->ai_next)
    {
      if (ai->ai_family == AF_INET)
        loop = (ntohl (((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr) >> 24) == 127;
      else if (ai->ai_family == AF_INET6)
        loop = IN6_IS_ADDR_LOOPBACK (&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr);
    }
  freeaddrinfo (res);
  return loop;
}

static char *
b64_encode (const char *s)
{
  size_t n = strlen (s);
  char *out = xmalloc (4 * ((n + 2) / 3) + 1);
  EVP_EncodeBlock ((unsigned char *)out, (const unsigned char *)s, (int)n);
  return out;
}

static char *
b64_decode (const char *s)
{
  size_t n = strlen (s);
  unsigned char *out = xmalloc (n + 1);
  int m = EVP_DecodeBlock (out, (const unsigned char *)s, (int)n);
  if (m < 0)
    {
      free (out);
      return NULL;
    }
  /* EVP_DecodeBlock counts the '=' padding as zero bytes.  */
  while (n > 0 && s[n - 1] == '=' && m > 0)
    {
      n--;
      m--;
    }
  out[m] = '\0';
  return (char *)out;
}

static void
json_cleanup (json_t **j)
{
  if (*j)
    json_decref (*j);
}

/* "https://index.docker.io/v1/" -> "docker.io"; "http://h:5000" -> "h:5000".  */
static char *
normalize_config_key (const char *key)
{
  const char *k = key;
  if (strncmp (k, "https://", 8) == 0)
    k += 8;
  else if (strncmp (k, "http://", 7) == 0)
    k += 7;
  const char *slash = strchr (k, '/');
  char *h = slash ? xstrndup (k, (size_t)(slash - k)) : xstrdup (k);
  if (strcmp (h, "index.docker.io") == 0 || strcmp (h, "registry-1.docker.io") == 0)
    {
      free (h);
      h = xstrdup (GR_DEFAULT_DOMAIN);
    }
  return h;
}

/* Ask a credential helper: `docker-credential-HELPER get` with the server
   URL on stdin answers {"ServerURL","Username","Secret"}.  Returns 1 if
   it knew the server, 0 if not.  */
static int
credential_helper (char **user, char **pass, const char *helper, const char *registry_domain, gr_error_t *err)
{
  cleanup_free char *prog = xasprintf ("docker-credential-%s", helper);
  const char *server
      = strcmp (registry_domain, GR_DEFAULT_DOMAIN) == 0 ? "https://index.docker.io/v1/" : registry_domain;
  int in[2], out[2];
  for (const char *c = helper; *c; c++)
    if (!isalnum ((unsigned char)*c) && *c != '-' && *c != '_' && *c != '.')
      return gr_make_error (err, EINVAL, "invalid credential helper name `%s`", helper);
  if (pipe2 (in, O_CLOEXEC) < 0)
    return gr_make_error (err, errno, "pipe");
  if (pipe2 (out, O_CLOEXEC) < 0)
    {
      close (in[0]);
      close (in[1]);
      return gr_make_error (err, errno, "pipe");
    }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init (&fa);
  posix_spawn_file_actions_adddup2 (&fa, in[0], 0);
  posix_spawn_file_actions_adddup2 (&fa, out[1], 1);
  char *argv[] = { prog, (char *)"get", NULL };
  extern char **environ;
  pid_t pid;
  int rc = posix_spawnp (&pid, prog, &fa, NULL, argv, environ);
  posix_spawn_file_actions_destroy (&fa);
  close (in[0]);
  close (out[1]);
  if (rc != 0)
    {
      close (in[1]);
      close (out[0]);
      return gr_make_error (err, rc, "run `%s` (credsStore/credHelpers of the docker config)", prog);
    }
  gr_error_t werr = NULL;
  gr_write_all (in[1], server, strlen (server), &werr);
  gr_error_release (&werr);
  close (in[1]);
  struct gr_buf b = { 0 };
  char chunk[4096];
  ssize_t n;
  while ((n = read (out[0], chunk, sizeof (chunk))) > 0 || (n < 0 && errno == EINTR))
    if (n > 0 && b.len < 65536)
      gr_buf_append (&b, chunk, (size_t)n);
  close (out[0]);
  int status = 0;
  while (waitpid (pid, &status, 0) < 0 && errno == EINTR)
    ;
  __attribute__ ((cleanup (json_cleanup))) json_t *doc = NULL;
  if (WIFEXITED (status) && WEXITSTATUS (status) == 0 && b.len)
    doc = json_loadb (b.data, b.len, 0, NULL);
  gr_buf_free (&b);
  if (doc == NULL)
    return 0; /* "credentials not found in native keychain" and the like */
  const char *u = json_string_value (json_object_get (doc, "Username"));
  const char *p = json_string_value (json_object_get (doc, "Secret"));
  if (u == NULL || p == NULL || *u == '\0')
    return 0;
  /* Username "<token>": Secret is an identity token (GR_IDENTITY_TOKEN_USER).  */
  *user = xstrdup (u);
  *pass = xstrdup (p);
  return 1;
}

int
gr_docker_config_credentials (char **user, char **pass, const char *config_path, const char *registry_domain,
                              gr_error_t *err)
{
  __attribute__ ((cleanup (json_cleanup))) json_t *doc = NULL;
  json_error_t jerr;
  FILE *f = fopen (config_path, "re");
  if (f == NULL)
    {
      if (errno == ENOENT || errno == ENOTDIR)
        return 0;
      return gr_make_error (err, errno, "open `%s`", config_path);
    }
  doc = json_loadf (f, 0, &jerr);
  fclose (f);
  if (doc == NULL)
    return gr_make_error (err, EINVAL, "`%s`: invalid JSON: %s", config_path, jerr.text);
  const char *helper = NULL;
  const char *key;
  json_t *val;
  json_object_foreach (json_object_get (doc, "credHelpers"), key, val)
  {
    cleanup_free char *k = normalize_config_key (key);
    if (strcmp (k, registry_domain) == 0 && json_is_string (val))
      helper = json_string_value (val);
  }
  if (helper == NULL)
    helper = json_string_value (json_object_get (doc, "credsStore"));
  if (helper && *helper)
    {
      int r = credential_helper (user, pass, helper, registry_domain, err);
      if (r != 0)
        return r;
    }
  json_t *auths = json_object_get (doc, "auths");
  json_object_foreach (auths, key, val)
  {
    cleanup_free char *k = normalize_config_key (key);
    if (strcmp (k, registry_domain) != 0)
      continue;
    json_t *a = json_object_get (val, "auth");
    json_t *u = json_object_get (val, "username");
    json_t *p = json_object_get (val, "password");
    json_t *t = json_object_get (val, "identitytoken");
    if (json_is_string (t) && *json_string_value (t))
      {
        /* As dockerd: the identity token wins over a username/password.  */
        *user = xstrdup (GR_IDENTITY_TOKEN_USER);
        *pass = xstrdup (json_string_value (t));
        return 1;
      }
    if (json_is_string (a) && *json_string_value (a))
      {
        cleanup_free char *dec = b64_decode (json_string_value (a));
        char *colon = dec ? strchr (dec, ':') : NULL;
        if (colon == NULL)
          return gr_make_error (err, EINVAL, "`%s`: invalid auth for `%s`", config_path, key);
        *colon = '\0';
        *user = xstrdup (dec);
        *pass = xstrdup (colon + 1);
        return 1;
      }
    if (json_is_string (u) && json_is_string (p))
      {
        *user = xstrdup (json_string_value (u));
        *pass = xstrdup (json_string_value (p));
        return 1;
      }
  }
  return 0;
}

int
gr_registry_new (struct gr_registry **out, const struct gr_reference *ref,
                 const struct gr_registry_opts *opts, gr_error_t *err)
{
  static const struct gr_registry_opts no_opts = { 0 };
  if (opts == NULL)
    opts = &no_opts;
  pthread_once (&curl_once, curl_init_once);

  struct gr_registry *r = xzalloc (sizeof (*r));
  r->host = xstrdup (gr_reference_api_host (ref));
  r->domain = xstrdup (ref->domain);
  r->path = xstrdup (ref->path);
  r->verbose = opts->verbose;
  r->insecure = host_is_loopback (r->host);
  for (size_t i = 0; i < opts->n_insecure; i++)
    if (strcmp (opts->insecure[i], r->host) == 0 || strcmp (opts->insecure[i], r->domain) == 0)
      r->insecure = true;
  pthread_mutex_init (&r->lock, NULL);
  for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_init (&r->share_locks[i], NULL);
  r->share = curl_share_init ();
  curl_share_setopt (r->share, CURLSHOPT_LOCKFUNC, share_lock);
  curl_share_setopt (r->share, CURLSHOPT_UNLOCKFUNC, share_unlock);
  curl_share_setopt (r->share, CURLSHOPT_USERDATA, r);
  curl_share_setopt (r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
  curl_share_setopt (r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
  curl_share_setopt (r->share, CURLSHOPT_SHARE, CURL_LOCK_DATA_CONNECT);

  if (opts->username)
    {
      r->user = xstrdup (opts->username);
      r->pass = xstrdup (opts->password ? opts->password : "");
    }
  else
    {
      cleanup_free char *path = NULL;
      if (opts->docker_config)
        path = xstrdup (opts->docker_config);
      else if (getenv ("DOCKER_CONFIG"))
        path = xasprintf ("%s/config.json", getenv ("DOCKER_CONFIG"));
      else if (getenv ("HOME"))
        path = xasprintf ("%s/.docker/config.json", getenv ("HOME"));
      if (path && gr_docker_config_credentials (&r->user, &r->pass, path, r->domain, err) < 0)
        {
          gr_registry_free (r);
          return -1;
        }
    }
  if (r->user && strcmp (r->user, GR_IDENTITY_TOKEN_USER) == 0)
    {
      r->identity_token = gr_steal (r->pass);
      free (r->user);
      r->user = NULL;
    }
  *out = r;
  return 0;
}

void
gr_registry_free (struct gr_registry *r)
{
  if (r == NULL)
    return;
  if (r->share)
    curl_share_cleanup (r->share);
  for (size_t i = 0; i < CURL_LOCK_DATA_LAST; i++)
    pthread_mutex_destroy (&r->share_locks[i]);
  pthread_mutex_destroy (&r->lock);
  free (r->host);
  free (r->domain);
  free (r->path);
  free (r->base);
  free (r->user);
  free (r->pass);
  free (r->identity_token);
  free (r->realm);
  free (r->service);
  free (r->token);
  free (r);
}

const char *
gr_registry_base_url (struct gr_registry *r)
{
  return r->base;
}

/* ------------------------------------------------------------------ */
/* one HTTP exchange                                                   */

struct request
{
  const char *method;      /* "GET", "HEAD" or "POST" */
  const char *post_form;   /* POST: the application/x-www-form-urlencoded body */
  const char *accept;      /* a full "Accept: ..." header line or NULL */
  int64_t range_from;      /* <= 0: no Range */
  bool no_auth;            /* never send Authorization (ping, token realm) */
  const char *auth_header; /* explicit Authorization line (token realm) */
  /* 2xx bodies go to SINK (may be NULL: discarded).  */
  gr_blob_sink sink;
  void *sink_arg;
};

struct response
{
  long status;
  char *content_type;
  char *docker_digest;
  char *www_auth;
  char *content_range;
  struct gr_buf errbody;
  gr_error_t sink_err;
  bool sink_failed;
  CURL *h;
};

static void
response_clear (struct response *resp)
{
  free (resp->content_type);
  free (resp->docker_digest);
  free (resp->www_auth);
  free (resp->content_range);
  gr_buf_free (&resp->errbody);
  gr_error_release (&resp->sink_err);
  memset (resp, 0, sizeof (*resp));
}

struct xfer
{
  const struct request *req;
  struct response *resp;
};

static size_t
header_cb (char *buf, size_t size, size_t nitems, void *arg)
{
  struct xfer *x = arg;
  size_t n = size * nitems;
  struct
  {
    const char *name;
    char **slot;
  } wanted[] = {
    { "content-type:", &x->resp->content_type },
    { "docker-content-digest:", &x->resp->docker_digest },
    { "www-authenticate:", &x->resp->www_auth },
    { "content-range:", &x->resp->content_range },
  };
  if (n >= 5 && strncmp (buf, "HTTP/", 5) == 0)
    {
      /* A new response (e.g. after 100 Continue): forget older headers.  */
      for (size_t i = 0; i < sizeof (wanted) / sizeof (wanted[0]); i++)
        {
          free (*wanted[i].slot);
          *wanted[i].slot = NULL;
        }
      return n;
    }
  for (size_t i = 0; i < sizeof (wanted) / sizeof (wanted[0]); i++)
    {
      size_t l = strlen (wanted[i].name);
      if (n > l && strncasecmp (buf, wanted[i].name, l) == 0)
        {
          const char *v = buf + l;
          const char *e = buf + n;
          while (v < e && (*v == ' ' || *v == '\t'))
            v++;
          while (e > v && (e[-1] == '\r' || e[-1] == '\n' || e[-1] == ' '))
            e--;
          free (*wanted[i].slot);
          *wanted[i].slot = xstrndup (v, (size_t)(e - v));
        }
    }
  return n;
}

static size_t
write_cb (char *buf, size_t size, size_t nmemb, void *arg)
{
  struct xfer *x = arg;
  size_t n = size * nmemb;
  long status = 0;
  curl_easy_getinfo (x->resp->h, CURLINFO_RESPONSE_CODE, &status);
  if (status < 200 || status >= 300)
    {
      if (x->resp->errbody.len < ERRBODY_MAX)
        gr_buf_append (&x->resp->errbody, buf,
                       n < ERRBODY_MAX - x->resp->errbody.len ? n : ERRBODY_MAX - x->resp->errbody.len);
      return n;
    }
  if (x->req->sink && x->req->sink (x->req->sink_arg, buf, n, &x->resp->sink_err) < 0)
    {
      x->resp->sink_failed = true;
      return 0;
    }
  return n;
}

static bool
same_origin (const char *url, const char *base)
{
  size_t n = strlen (base);
  return strncmp (url, base, n) == 0 && (url[n] == '/' || url[n] == '\0' || url[n] == '?');
}

static bool
curl_code_retryable (CURLcode c)
{
  switch (c)
    {
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_GOT_NOTHING:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
      return true;
    default:
      return false;
    }
}

/* Current auth header for the registry (NULL if none).  *GEN gets the
   token generation it belongs to.  */
static char *
auth_header (struct gr_registry *r, unsigned *gen)
{
  char *h = NULL;
  pthread_mutex_lock (&r->lock);
  *gen = r->token_gen;
  if (r->auth == AUTH_BEARER && r->token)
    h = xasprintf ("Authorization: Bearer %s", r->token);
  else if (r->auth == AUTH_BASIC && r->user)
    {
      cleanup_free char *up = xasprintf ("%s:%s", r->user, r->pass ? r->pass : "");
      cleanup_free char *b = b64_encode (up);
      h = xasprintf ("Authorization: Basic %s", b);
    }
  pthread_mutex_unlock (&r->lock);
  return h;
}

/* One request to URL without following redirects.  Returns 0 when a
   response arrived (any status), <0 on a transport error (*RETRYABLE says
   whether trying again may help).  *LOCATION gets a redirect target.  */
static int
http_once (struct gr_registry *r, const char *url, const struct request *req, struct response *resp,
           char **location, bool send_auth, bool *retryable, gr_error_t *err)
{
  CURL *h = curl_easy_init ();
  struct curl_slist *hdrs = NULL;
  cleanup_free char *auth = NULL;
  cleanup_free char *range = NULL;
  char errbuf[CURL_ERROR_SIZE] = "";
  struct xfer x = { req, resp };
  int ret = 0;
  unsigned gen;

  if (h == NULL)
    return gr_make_error (err, ENOMEM, "curl_easy_init");
  resp->h = h;
  *retryable = false;
  if (req->accept)
    hdrs = curl_slist_append (hdrs, req->accept);
  if (req->auth_header)
    hdrs = curl_slist_append (hdrs, req->auth_header);
  else if (send_auth && !req->no_auth && (auth = auth_header (r, &gen)))
    hdrs = curl_slist_append (hdrs, auth);
  if (req->range_from > 0)
    {
      range = xasprintf ("Range: bytes=%lld-", (long long)req->range_from);
      hdrs = curl_slist_append (hdrs, range);
    }
  curl_easy_setopt (h, CURLOPT_URL, url);
  curl_easy_setopt (h, CURLOPT_SHARE, r->share);
  curl_easy_setopt (h, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt (h, CURLOPT_USERAGENT, USER_AGENT);
  curl_easy_setopt (h, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
  curl_easy_setopt (h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
  curl_easy_setopt (h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
  curl_easy_setopt (h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt (h, CURLOPT_CONNECTTIMEOUT, 30L);
  curl_easy_setopt (h, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt (h, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt (h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt (h, CURLOPT_HEADERFUNCTION, header_cb);
  curl_easy_setopt (h, CURLOPT_HEADERDATA, &x);
  curl_easy_setopt (h, CURLOPT_WRITEFUNCTION, write_cb);
  curl_easy_setopt (h, CURLOPT_WRITEDATA, &x);
  curl_easy_setopt (h, CURLOPT_ACCEPT_ENCODING, NULL);
  if (strcmp (req->method, "HEAD") == 0)
    curl_easy_setopt (h, CURLOPT_NOBODY, 1L);
  else if (strcmp (req->method, "POST") == 0)
    curl_easy_setopt (h, CURLOPT_POSTFIELDS, req->post_form ? req->post_form : "");
  if (r->insecure)
    {
      curl_easy_setopt (h, CURLOPT_SSL_VERIFYPEER, 0L);
      curl_easy_setopt (h, CURLOPT_SSL_VERIFYHOST, 0L);
    }
  if (r->verbose)
    fprintf (stderr, "> %s %s%s%s\n", req->method, url, auth ? " (auth)" : "", range ? " (range)" : "");

  CURLcode c = curl_easy_perform (h);
  curl_easy_getinfo (h, CURLINFO_RESPONSE_CODE, &resp->status);
  if (r->verbose)
    fprintf (stderr, "< %ld (%s)\n", resp->status, curl_easy_strerror (c));
  if (resp->sink_failed)
    {
      /* The sink's error is the one to report; move it.  */
      if (err)
        {
          gr_error_release (err);
          *err = resp->sink_err;
        }
      else
        gr_error_release (&resp->sink_err);
      resp->sink_err = NULL;
      ret = -1;
    }
  else if (c != CURLE_OK)
    {
      *retryable = curl_code_retryable (c);
      ret = gr_make_error (err, EIO, "%s: %s", url, *errbuf ? errbuf : curl_easy_strerror (c));
    }
  else if (resp->status >= 300 && resp->status < 400)
    {
      char *loc = NULL;
      curl_easy_getinfo (h, CURLINFO_REDIRECT_URL, &loc);
      *location = loc ? xstrdup (loc) : NULL;
    }
  curl_slist_free_all (hdrs);
  curl_easy_cleanup (h);
  resp->h = NULL;
  return ret;
}

/* A registry error body {"errors":[{"code","message"}]} as one line.  */
static char *
describe_error (long status, const struct gr_buf *body)
{
  __attribute__ ((cleanup (json_cleanup))) json_t *doc = NULL;
  if (body->len)
    doc = json_loadb (body->data, body->len, 0, NULL);
  json_t *errs = json_object_get (doc, "errors");
  if (json_is_array (errs) && json_array_size (errs) > 0)
    {
      json_t *e = json_array_get (errs, 0);
      const char *code = json_string_value (json_object_get (e, "code"));
      const char *msg = json_string_value (json_object_get (e, "message"));
      return xasprintf ("%s%s%s (HTTP %ld)", code ? code : "", code && msg ? ": " : "", msg ? msg : "",
                        status);
    }
  return xasprintf ("HTTP %ld", status);
}

static int fetch_token (struct gr_registry *r, unsigned seen_gen, gr_error_t *err);
static int setup_auth (struct gr_registry *r, const char *www_auth, gr_error_t *err);

/* One request with redirects and one auth refresh.  Transport errors and
   the final status go to the caller.  */
static int
http_do (struct gr_registry *r, const char *path, const struct request *req, struct response *resp,
         bool *retryable, gr_error_t *err)
{
  cleanup_free char *url = xasprintf ("%s%s", r->base, path);
  bool auth_retried = false;

  for (int hop = 0; hop <= MAX_REDIRECTS; hop++)
    {
      cleanup_free char *location = NULL;
      unsigned gen;
      pthread_mutex_lock (&r->lock);
      gen = r->token_gen;
      pthread_mutex_unlock (&r->lock);
      response_clear (resp);
      bool send_auth = same_origin (url, r->base);
      if (http_once (r, url, req, resp, &location, send_auth, retryable, err) < 0)
        return -1;
      if (resp->status >= 300 && resp->status < 400 && resp->status != 304)
        {
          if (location == NULL)
            return gr_make_error (err, EPROTO, "%s: HTTP %ld redirect without Location", url, resp->status);
          free (url);
          url = gr_steal (location);
          continue;
        }
      if (resp->status == 401 && send_auth && !auth_retried && !req->no_auth)
        {
          enum auth_kind kind;
          pthread_mutex_lock (&r->lock);
          kind = r->auth;
          pthread_mutex_unlock (&r->lock);
          if (kind == AUTH_BEARER)
            {
              auth_retried = true;
              if (fetch_token (r, gen, err) < 0)
                return -1;
              hop--;
              continue;
            }
          if (kind == AUTH_NONE && resp->www_auth)
            {
              /* /v2/ was open but this repository is not: set up auth
                 from this challenge and try once more.  */
              cleanup_free char *www = xstrdup (resp->www_auth);
              auth_retried = true;
              if (setup_auth (r, www, err) < 0)
                return -1;
              hop--;
              continue;
            }
        }
      return 0;
    }
  return gr_make_error (err, ELOOP, "%s: more than %d redirects", path, MAX_REDIRECTS);
}

static void
backoff_sleep (int attempt)
{
  /* 0.25 s, 0.5 s, 1 s, 2 s ...  */
  long ms = 250L << (attempt < 5 ? attempt : 5);
  struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
  nanosleep (&ts, NULL);
}

static bool
status_retryable (long status)
{
  return status >= 500 || status == 429 || status == 408;
}

/* http_do with retries on transport errors and 5xx/429; returns 0 with a
   2xx response, <0 otherwise (the error names the status).  */
static int
http_request (struct gr_registry *r, const char *path, const struct request *req, struct response *resp,
              const char *what, gr_error_t *err)
{
  for (int attempt = 0;; attempt++)
    {
      bool retryable = false;
      gr_error_release (err);
      if (http_do (r, path, req, resp, &retryable, err) < 0)
        {
          if (retryable && attempt + 1 < MAX_TRIES)
            {
              backoff_sleep (attempt);
              continue;
            }
          return gr_error_wrap (err, "%s", what);
        }
      if (resp->status >= 200 && resp->status < 300)
        return 0;
      if (status_retryable (resp->status) && attempt + 1 < MAX_TRIES)
        {
          backoff_sleep (attempt);
          continue;
        }
      cleanup_free char *desc = describe_error (resp->status, &resp->errbody);
      int status = resp->status == 404   ? ENOENT
                   : resp->status == 401 ? EACCES
                   : resp->status == 403 ? EACCES
                                         : EIO;
      if (resp->status == 401)
        return gr_make_error (err, status, "%s: unauthorized: %s", what, desc);
      return gr_make_error (err, status, "%s: %s", what, desc);
    }
}

/* ------------------------------------------------------------------ */
/* auth                                                                */

struct bounded_buf
{
  struct gr_buf *b;
  size_t max;
};

static int
bounded_sink (void *arg, const void *buf, size_t len, gr_error_t *err)
{
  struct bounded_buf *bb = arg;
  if (bb->b->len + len > bb->max)
    return gr_make_error (err, EFBIG, "response larger than %zu bytes", bb->max);
  gr_buf_append (bb->b, buf, len);
  return 0;
}

/* Get a new Bearer token unless another thread already did since SEEN_GEN:
   GET realm?service=..&scope=.. (Basic credentials if any), or with an
   identity token the OAuth2 form POST dockerd sends (grant_type
   refresh_token, client_id docker).  */
static int
fetch_token (struct gr_registry *r, unsigned seen_gen, gr_error_t *err)
{
  cleanup_free char *realm = NULL;
  cleanup_free char *service = NULL;
  cleanup_free char *basic = NULL;
  cleanup_free char *url = NULL;
  cleanup_free char *form = NULL;
  cleanup_buf struct gr_buf body = { 0 };
  cleanup_buf struct gr_buf query = { 0 };
  __attribute__ ((cleanup (json_cleanup))) json_t *doc = NULL;
  struct response resp = { 0 };
  int ret;

  pthread_mutex_lock (&r->lock);
  if (r->token_gen != seen_gen && r->token)
    {
      pthread_mutex_unlock (&r->lock);
      return 0;
    }
  realm = xstrdup (r->realm);
  service = r->service ? xstrdup (r->service) : NULL;
  if (r->user)
    {
      cleanup_free char *up = xasprintf ("%s:%s", r->user, r->pass ? r->pass : "");
      cleanup_free char *b = b64_encode (up);
      basic = xasprintf ("Authorization: Basic %s", b);
    }
  pthread_mutex_unlock (&r->lock);

  CURL *esc = curl_easy_init ();
  cleanup_free char *scope = xasprintf ("repository:%s:pull", r->path);
  char *escope = curl_easy_escape (esc, scope, 0);
  char *eservice = service ? curl_easy_escape (esc, service, 0) : NULL;
  if (eservice)
    gr_buf_printf (&query, "service=%s&", eservice);
  gr_buf_printf (&query, "scope=%s", escope);
  if (r->identity_token)
    {
      char *etok = curl_easy_escape (esc, r->identity_token, 0);
      form = xasprintf ("grant_type=refresh_token&refresh_token=%s&client_id=docker&%s", etok, query.data);
      curl_free (etok);
    }
  curl_free (escope);
  curl_free (eservice);
  curl_easy_cleanup (esc);
  if (form && strncmp (realm, "http://", 7) == 0 && r->base && strncmp (r->base, "https://", 8) == 0
      && !r->insecure)
    return gr_make_error (err, EACCES,
                          "token realm `%s` is plain http: the identity token is not sent there (the "
                          "registry itself is https)",
                          realm);
  if (form)
    url = xstrdup (realm);
  else
    url = xasprintf ("%s%s%s", realm, strchr (realm, '?') ? "&" : "?", query.data);

  struct bounded_buf bb = { &body, TOKEN_MAX };
  struct request req = { .method = form ? "POST" : "GET",
                         .post_form = form,
                         .no_auth = true,
                         .auth_header = form ? NULL : basic,
                         .sink = bounded_sink,
                         .sink_arg = &bb };
  bool retryable;
  ret = -1;
  for (int attempt = 0; attempt < MAX_TRIES; attempt++)
    {
      gr_buf_reset (&body);
      gr_error_release (err);
      /* http_once directly: a redirect from the realm is not followed (it
         ends as an HTTP 3xx error below; a POST would carry the identity
         token wherever it pointed).  */
      cleanup_free char *location = NULL;
      response_clear (&resp);
      ret = http_once (r, url, &req, &resp, &location, false, &retryable, err);
      if (ret < 0 && retryable)
        {
          backoff_sleep (attempt);
          continue;
        }
      if (ret == 0 && status_retryable (resp.status))
        {
          ret = -1;
          backoff_sleep (attempt);
          continue;
        }
      break;
    }
  if (ret < 0 && err && *err)
    {
      response_clear (&resp);
      return gr_error_wrap (err, "token from %s", realm);
    }
  if (resp.status == 401 || resp.status == 403)
    {
      response_clear (&resp);
      return gr_make_error (err, EACCES, "token from %s: unauthorized: %s", realm,
                            form      ? "the identity token was refused (docker login again)"
                            : r->user ? "incorrect username or password"
                                      : "authentication required");
    }
  if (resp.status != 200)
    {
      cleanup_free char *desc = describe_error (resp.status, &resp.errbody);
      response_clear (&resp);
      return gr_make_error (err, EIO, "token from %s: %s", realm, desc);
    }
  response_clear (&resp);
  doc = json_loadb (body.data ? body.data : "", body.len, 0, NULL);
  const char *tok = json_string_value (json_object_get (doc, "token"));
  if (tok == NULL || *tok == '\0')
    tok = json_string_value (json_object_get (doc, "access_token"));
  if (tok == NULL || *tok == '\0')
    return gr_make_error (err, EPROTO, "token from %s: no token in the response", realm);
  for (const char *c = tok; *c; c++)
    if ((unsigned char)*c < 0x21 || *c == 0x7f)
      return gr_make_error (err, EPROTO, "token from %s: invalid characters", realm);
  pthread_mutex_lock (&r->lock);
  free (r->token);
  r->token = xstrdup (tok);
  r->token_gen++;
  pthread_mutex_unlock (&r->lock);
  return 0;
}

static int
setup_auth (struct gr_registry *r, const char *www_auth, gr_error_t *err)
{
  struct gr_auth_challenge *c = NULL;
  size_t n = 0;
  if (www_auth == NULL)
    return gr_make_error (err, EPROTO, "%s: 401 without WWW-Authenticate", r->host);
  if (gr_auth_challenges_parse (&c, &n, www_auth, err) < 0)
    return -1;
  /* Bearer first wherever it stands in the header (as dockerd, whose
     token handler comes before its basic one), then Basic.  */
  const struct gr_auth_challenge *bearer_c = NULL;
  bool basic_c = false;
  for (size_t i = 0; i < n; i++)
    {
      if (strcmp (c[i].scheme, "bearer") == 0 && c[i].realm && bearer_c == NULL)
        bearer_c = &c[i];
      else if (strcmp (c[i].scheme, "basic") == 0)
        basic_c = true;
    }
  int ret = 0;
  if (bearer_c)
    {
      if (strncmp (bearer_c->realm, "https://", 8) != 0 && strncmp (bearer_c->realm, "http://", 7) != 0)
        ret = gr_make_error (err, EPROTO, "%s: bearer realm `%s` is not an http(s) URL", r->host,
                             bearer_c->realm);
      else
        {
          pthread_mutex_lock (&r->lock);
          r->auth = AUTH_BEARER;
          free (r->realm);
          r->realm = xstrdup (bearer_c->realm);
          free (r->service);
          r->service = bearer_c->service ? xstrdup (bearer_c->service) : NULL;
          pthread_mutex_unlock (&r->lock);
        }
    }
  else if (basic_c && r->user == NULL)
    ret = gr_make_error (err, EACCES, "%s: unauthorized: %s", r->host,
                         r->identity_token ? "the registry asks for a username and password (Basic), "
                                             "the docker config holds an identity token for it"
                                           : "authentication required (use --username and "
                                             "--password-stdin, or docker login)");
  else if (basic_c)
    {
      pthread_mutex_lock (&r->lock);
      r->auth = AUTH_BASIC;
      pthread_mutex_unlock (&r->lock);
    }
  else
    ret = gr_make_error (err, ENOTSUP, "%s: no supported authentication scheme in `%s`", r->host, www_auth);
  gr_auth_challenges_free (c, n);
  if (ret < 0)
    return ret;
  pthread_mutex_lock (&r->lock);
  bool bearer = r->auth == AUTH_BEARER;
  unsigned gen = r->token_gen;
  pthread_mutex_unlock (&r->lock);
  return bearer ? fetch_token (r, gen, err) : 0;
}

int
gr_registry_ping (struct gr_registry *r, gr_error_t *err)
{
  const char *schemes[2] = { "https", "http" };
  size_t n_schemes = r->insecure ? 2 : 1;
  struct request req = { .method = "GET", .no_auth = true };
  struct response resp = { 0 };
  int ret = -1;

  for (size_t i = 0; i < n_schemes; i++)
    {
      free (r->base);
      r->base = xasprintf ("%s://%s", schemes[i], r->host);
      gr_error_release (err);
      if (i + 1 < n_schemes)
        {
          /* https on an insecure registry: one try; a transport or TLS
             error means plain http (as dockerd's endpoint fallback).  */
          bool retryable;
          if (http_do (r, "/v2/", &req, &resp, &retryable, err) < 0)
            continue;
          ret = resp.status >= 200 && resp.status < 300
                    ? 0
                    : gr_make_error (err, EIO, "ping: HTTP %ld", resp.status);
          break;
        }
      ret = http_request (r, "/v2/", &req, &resp, "ping", err);
      break;
    }
  if (ret == 0)
    {
      response_clear (&resp);
      return 0;
    }
  if (resp.status == 401)
    {
      gr_error_release (err);
      cleanup_free char *www = resp.www_auth ? xstrdup (resp.www_auth) : NULL;
      response_clear (&resp);
      return setup_auth (r, www, err);
    }
  if (resp.status == 404)
    gr_make_error (err, ENOTSUP, "%s does not speak the registry v2 API (GET /v2/: 404)", r->base);
  response_clear (&resp);
  return gr_error_wrap (err, "registry %s", r->host);
}

/* ------------------------------------------------------------------ */
/* manifests and blobs                                                 */

struct hashing_sink
{
  struct gr_sha256 *h;
  int64_t delivered; /* bytes passed on */
  int64_t skip;      /* bytes to drop (server ignored Range) */
  int64_t limit;     /* max bytes (-1 none) */
  bool size_known;   /* LIMIT is the descriptor's size */
  const char *what;
  gr_blob_sink next;
  void *next_arg;
  /* Per attempt: the Range asked for and whether a body arrived yet.  */
  struct response *resp;
  int64_t range_from;
  bool fresh;
};

static int
hashing_sink_cb (void *arg, const void *buf, size_t len, gr_error_t *err)
{
  struct hashing_sink *s = arg;
  const char *p = buf;
  if (s->fresh)
    {
      s->fresh = false;
      s->skip = 0;
      if (s->range_from > 0 && s->resp && s->resp->h)
        {
          long st = 0;
          curl_easy_getinfo (s->resp->h, CURLINFO_RESPONSE_CODE, &st);
          if (st == 200)
            s->skip = s->range_from; /* Range ignored: drop what we have */
          else if (st == 206)
            {
              cleanup_free char *want = xasprintf ("bytes %lld-", (long long)s->range_from);
              if (s->resp->content_range == NULL
                  || strncmp (s->resp->content_range, want, strlen (want)) != 0)
                return gr_make_error (err, EPROTO, "%s: unexpected Content-Range `%s`", s->what,
                                      s->resp->content_range ? s->resp->content_range : "");
            }
        }
    }
  if (s->skip > 0)
    {
      size_t drop = (int64_t)len < s->skip ? len : (size_t)s->skip;
      p += drop;
      len -= drop;
      s->skip -= (int64_t)drop;
    }
  if (len == 0)
    return 0;
  if (s->limit >= 0 && s->delivered + (int64_t)len > s->limit)
    return gr_make_error (err, EFBIG, "%s: larger than %s%lld bytes", s->what,
                          s->size_known ? "its descriptor's " : "the limit of ", (long long)s->limit);
  gr_sha256_update (s->h, p, len);
  s->delivered += (int64_t)len;
  return s->next ? s->next (s->next_arg, p, len, err) : 0;
}

/* GET PATH into SINK with retries, Range resume, size bound and digest
   check.  */
static int
fetch_verified (struct gr_registry *r, const char *path, const char *accept, const char *digest, int64_t size,
                int64_t max, const char *what, gr_blob_sink sink, void *arg, struct response *resp,
                gr_error_t *err)
{
  struct hashing_sink hs = { .h = gr_sha256_new (),
                             .limit = size >= 0 ? size : max,
                             .size_known = size >= 0,
                             .what = what,
                             .next = sink,
                             .next_arg = arg };
  int stalled = 0;
  int ret = -1;

  for (int attempt = 0; attempt < 4 * MAX_TRIES; attempt++)
    {
      int64_t before = hs.delivered;
      struct request req = { .method = "GET",
                             .accept = accept,
                             .range_from = hs.delivered,
                             .sink = hashing_sink_cb,
                             .sink_arg = &hs };
      bool retryable = false;
      hs.resp = resp;
      hs.range_from = hs.delivered;
      hs.fresh = true;
      gr_error_release (err);
      ret = http_do (r, path, &req, resp, &retryable, err);
      if (ret < 0 && !retryable)
        {
          gr_sha256_free (hs.h);
          return -1;
        }
      if (ret == 0 && resp->status == 416 && size >= 0 && hs.delivered == size)
        {
          ret = 0; /* nothing left to fetch */
          break;
        }
      if (ret == 0 && (resp->status < 200 || resp->status >= 300))
        {
          if (status_retryable (resp->status))
            ret = -1;
          else
            {
              cleanup_free char *desc = describe_error (resp->status, &resp->errbody);
              gr_sha256_free (hs.h);
              int st = resp->status == 404                          ? ENOENT
                       : resp->status == 401 || resp->status == 403 ? EACCES
                                                                    : EIO;
              return gr_make_error (err, st, "%s: %s", what, desc);
            }
        }
      if (ret == 0 && (size < 0 || hs.delivered == size))
        break;
      if (ret == 0)
        gr_make_error (err, EIO, "%s: truncated (got %lld of %lld bytes)", what, (long long)hs.delivered,
                       (long long)size);
      else if (err && *err == NULL)
        gr_make_error (err, EIO, "%s: HTTP %ld", what, resp->status);
      if (hs.delivered > before)
        stalled = 0;
      else if (++stalled >= MAX_TRIES)
        break;
      ret = -1;
      backoff_sleep (stalled);
    }
  if (ret < 0)
    {
      gr_sha256_free (hs.h);
      if (size >= 0)
        return gr_error_wrap (err,
                              "%s: incomplete, gave up after %d tries without progress (got "
                              "%lld of %lld bytes)",
                              what, MAX_TRIES, (long long)hs.delivered, (long long)size);
      return gr_error_wrap (err,
                            "%s: incomplete, gave up after %d tries without progress (got "
                            "%lld bytes)",
                            what, MAX_TRIES, (long long)hs.delivered);
    }
  char hex[GR_SHA256_HEX_LEN + 1];
  gr_sha256_final (hs.h, hex);
  if (strcmp (digest + 7, hex) != 0)
    return gr_make_error (err, EINVAL, "%s: digest mismatch: got sha256:%s", what, hex);
  return 0;
}

int
gr_registry_get_manifest (struct gr_buf *body, char **media_type, char **digest, struct gr_registry *r,
                          const char *tag_or_digest, gr_error_t *err)
{
  cleanup_free char *dgst = NULL;
  struct response resp = { 0 };
  int ret;

  if (strchr (tag_or_digest, ':'))
    {
      if (!gr_digest_valid (tag_or_digest))
        return gr_make_error (err, EINVAL, "invalid digest `%s`", tag_or_digest);
      dgst = xstrdup (tag_or_digest);
    }
  else
    {
      /* Resolve the tag.  */
      cleanup_free char *path = xasprintf ("/v2/%s/manifests/%s", r->path, tag_or_digest);
      cleanup_free char *what = xasprintf ("manifest %s:%s", r->path, tag_or_digest);
      struct request req = { .method = "HEAD", .accept = manifest_accept };
      ret = http_request (r, path, &req, &resp, what, err);
      if (ret < 0)
        {
          long st = resp.status;
          response_clear (&resp);
          if (st == 404)
            {
              gr_error_release (err);
              return gr_make_error (err, ENOENT, "manifest for %s/%s:%s not found: manifest unknown",
                                    r->domain, r->path, tag_or_digest);
            }
          /* A registry without HEAD support: resolve with GET below.  */
          if (st != 405 && st != 400 && st != 501)
            return -1;
          gr_error_release (err);
        }
      else if (resp.docker_digest && gr_digest_valid (resp.docker_digest))
        dgst = xstrdup (resp.docker_digest);
      response_clear (&resp);
      if (dgst == NULL)
        {
          /* No digest header: GET by tag and take the bytes' digest.  */
          struct gr_buf b = { 0 };
          struct bounded_buf bb = { &b, GR_MANIFEST_MAX };
          struct hashing_sink hs = { .h = gr_sha256_new (),
                                     .limit = GR_MANIFEST_MAX,
                                     .what = what,
                                     .next = bounded_sink,
                                     .next_arg = &bb };
          struct request greq
              = { .method = "GET", .accept = manifest_accept, .sink = hashing_sink_cb, .sink_arg = &hs };
          ret = http_request (r, path, &greq, &resp, what, err);
          if (ret < 0)
            {
              gr_sha256_free (hs.h);
              gr_buf_free (&b);
              response_clear (&resp);
              return -1;
            }
          char hex[GR_SHA256_HEX_LEN + 1];
          gr_sha256_final (hs.h, hex);
          if (resp.docker_digest && gr_digest_valid (resp.docker_digest)
              && strcmp (resp.docker_digest + 7, hex) != 0)
            {
              gr_make_error (err, EINVAL, "%s: Docker-Content-Digest %s but the content is sha256:%s", what,
                             resp.docker_digest, hex);
              gr_buf_free (&b);
              response_clear (&resp);
              return -1;
            }
          *digest = xasprintf ("sha256:%s", hex);
          *media_type = resp.content_type ? xstrdup (resp.content_type) : NULL;
          response_clear (&resp);
          gr_buf_free (body);
          *body = b;
          return 0;
        }
    }

  cleanup_free char *path = xasprintf ("/v2/%s/manifests/%s", r->path, dgst);
  cleanup_free char *what = xasprintf ("manifest %s@%s", r->path, dgst);
  struct gr_buf b = { 0 };
  struct bounded_buf bb = { &b, GR_MANIFEST_MAX };
  ret = fetch_verified (r, path, manifest_accept, dgst, -1, GR_MANIFEST_MAX, what, bounded_sink, &bb, &resp,
                        err);
  if (ret < 0)
    {
      gr_buf_free (&b);
      response_clear (&resp);
      return -1;
    }
  *media_type = resp.content_type ? xstrdup (resp.content_type) : NULL;
  response_clear (&resp);
  *digest = gr_steal (dgst);
  gr_buf_free (body);
  *body = b;
  return 0;
}

int
gr_registry_get_blob (struct gr_buf *body, struct gr_registry *r, const char *digest, int64_t size,
                      size_t max, gr_error_t *err)
{
  cleanup_free char *path = xasprintf ("/v2/%s/blobs/%s", r->path, digest);
  cleanup_free char *what = xasprintf ("blob %s", digest);
  struct response resp = { 0 };
  struct bounded_buf bb = { body, max };
  gr_buf_reset (body);
  if (size > (int64_t)max)
    return gr_make_error (err, EFBIG, "%s: %lld bytes, more than the limit of %zu", what, (long long)size,
                          max);
  int ret = fetch_verified (r, path, NULL, digest, size, (int64_t)max, what, bounded_sink, &bb, &resp, err);
  response_clear (&resp);
  return ret;
}

int
gr_registry_fetch_blob (struct gr_registry *r, const char *digest, int64_t size, gr_blob_sink sink, void *arg,
                        gr_error_t *err)
{
  cleanup_free char *path = xasprintf ("/v2/%s/blobs/%s", r->path, digest);
  cleanup_free char *what = xasprintf ("blob %s", digest);
  struct response resp = { 0 };
  int ret = fetch_verified (r, path, NULL, digest, size, -1, what, sink, arg, &resp, err);
  response_clear (&resp);
  return ret;
}

/* Pure parsers of the registry client: references, WWW-Authenticate,
   platforms, manifests/indexes, image configs.  */
#include "config.h"

#include "digest.h"
#include "registry.h"

#include <ctype.h>
#include <string.h>
#include <sys/utsname.h>

/* ------------------------------------------------------------------ */
/* references                                                          */

#define NAME_MAX_TOTAL 255

static bool
is_alnum_lower (char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

/* [a-z0-9]+(?:(?:[._]|__|[-]*)[a-z0-9]+)*  */
static bool
path_component_valid (const char *s, size_t n)
{
  size_t i = 0;
  if (n == 0 || !is_alnum_lower (s[0]))
    return false;
  while (i < n)
    {
      while (i < n && is_alnum_lower (s[i]))
        i++;
      if (i == n)
        return true;
      /* a separator */
      size_t start = i;
      if (s[i] == '.')
        i++;
      else if (s[i] == '_')
        {
          i++;
          if (i < n && s[i] == '_')
            i++;
        }
      else if (s[i] == '-')
        {
          while (i < n && s[i] == '-')
            i++;
        }
      else
        return false;
      if (i == start || i == n || !is_alnum_lower (s[i]))
        return false;
    }
  return true;
}

static bool
domain_label_valid (const char *s, size_t n)
{
  if (n == 0 || !isalnum ((unsigned char)s[0]) || !isalnum ((unsigned char)s[n - 1]))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!isalnum ((unsigned char)s[i]) && s[i] != '-')
      return false;
  return true;
}

/* host(.host)*(:port)? or [ipv6](:port)?  */
static bool
domain_valid (const char *d)
{
  const char *end = d + strlen (d);
  const char *port = NULL;
  if (d[0] == '[')
    {
      const char *close = strchr (d, ']');
      if (close == NULL || close == d + 1)
        return false;
      for (const char *p = d + 1; p < close; p++)
        if (!isxdigit ((unsigned char)*p) && *p != ':' && *p != '.')
          return false;
      if (close[1] == '\0')
        return true;
      if (close[1] != ':')
        return false;
      port = close + 1;
    }
  else
    {
      port = strchr (d, ':');
      const char *hend = port ? port : end;
      const char *p = d;
      while (p < hend)
        {
          const char *dot = memchr (p, '.', (size_t)(hend - p));
          const char *lend = dot ? dot : hend;
          if (!domain_label_valid (p, (size_t)(lend - p)))
            return false;
          p = dot ? dot + 1 : hend;
          if (dot && p == hend)
            return false;
        }
    }
  if (port)
    {
      if (port[1] == '\0')
        return false;
      for (const char *p = port + 1; *p; p++)
        if (!isdigit ((unsigned char)*p))
          return false;
    }
  return true;
}

/* [\w][\w.-]{0,127}  */
static bool
tag_valid (const char *t)
{
  size_t n = strlen (t);
  if (n == 0 || n > 128)
    return false;
  for (size_t i = 0; i < n; i++)
    {
      char c = t[i];
      bool word = isalnum ((unsigned char)c) || c == '_';
      if (!word && (i == 0 || (c != '.' && c != '-')))
        return false;
    }
  return true;
}

void
gr_reference_free (struct gr_reference *r)
{
  if (r == NULL)
    return;
  free (r->domain);
  free (r->path);
  free (r->tag);
  free (r->digest);
  free (r);
}

int
gr_reference_parse (struct gr_reference **out, const char *s, gr_error_t *err)
{
  cleanup_reference struct gr_reference *r = NULL;
  cleanup_free char *name = NULL;

  if (s == NULL || *s == '\0')
    return gr_make_error (err, EINVAL, "invalid reference format: empty reference");
  if (gr_hex64_valid (s))
    return gr_make_error (err, EINVAL,
                          "invalid repository name (%s), cannot specify 64-byte hexadecimal strings", s);

  r = xzalloc (sizeof (*r));
  const char *at = strchr (s, '@');
  size_t nt_len = at ? (size_t)(at - s) : strlen (s);
  if (at)
    {
      const char *d = at + 1;
      const char *colon = strchr (d, ':');
      if (colon == NULL || colon == d)
        return gr_make_error (err, EINVAL, "invalid reference format: `%s`", s);
      if (strncmp (d, "sha256:", 7) != 0)
        return gr_make_error (err, EINVAL, "unsupported digest algorithm in `%s`", s);
      if (!gr_digest_valid (d))
        return gr_make_error (err, EINVAL, "invalid digest in reference `%s`", s);
      r->digest = xstrdup (d);
    }

  name = xstrndup (s, nt_len);
  char *slash = strrchr (name, '/');
  char *colon = strrchr (slash ? slash : name, ':');
  if (colon)
    {
      *colon = '\0';
      if (!tag_valid (colon + 1))
        return gr_make_error (err, EINVAL, "invalid reference format: invalid tag in `%s`", s);
      r->tag = xstrdup (colon + 1);
    }
  if (*name == '\0')
    return gr_make_error (err, EINVAL, "invalid reference format: `%s`", s);

  /* Split the domain as docker's splitDockerDomain.  */
  const char *remainder;
  char *first = strchr (name, '/');
  if (first == NULL
      || (memchr (name, '.', (size_t)(first - name)) == NULL
          && memchr (name, ':', (size_t)(first - name)) == NULL
          && !(first - name == 9 && strncmp (name, "localhost", 9) == 0)))
    {
      r->domain = xstrdup (GR_DEFAULT_DOMAIN);
      remainder = name;
    }
  else
    {
      r->domain = xstrndup (name, (size_t)(first - name));
      remainder = first + 1;
    }
  if (strcmp (r->domain, "index.docker.io") == 0)
    {
      free (r->domain);
      r->domain = xstrdup (GR_DEFAULT_DOMAIN);
    }
  if (strcmp (r->domain, GR_DEFAULT_DOMAIN) == 0 && strchr (remainder, '/') == NULL)
    r->path = xasprintf ("library/%s", remainder);
  else
    r->path = xstrdup (remainder);

  for (const char *p = r->path; *p; p++)
    if (isupper ((unsigned char)*p))
      return gr_make_error (err, EINVAL, "invalid reference format: repository name must be lowercase");
  if (!domain_valid (r->domain))
    return gr_make_error (err, EINVAL, "invalid reference format: invalid registry `%s`", r->domain);
  const char *p = r->path;
  for (;;)
    {
      const char *e = strchr (p, '/');
      size_t n = e ? (size_t)(e - p) : strlen (p);
      if (!path_component_valid (p, n))
        return gr_make_error (err, EINVAL, "invalid reference format: `%s`", s);
      if (e == NULL)
        break;
      p = e + 1;
    }
  if (strlen (r->domain) + 1 + strlen (r->path) > NAME_MAX_TOTAL)
    return gr_make_error (err, EINVAL, "repository name must not be more than %d characters", NAME_MAX_TOTAL);

  if (r->tag == NULL && r->digest == NULL)
    r->tag = xstrdup ("latest");
  *out = gr_steal (r);
  return 0;
}

char *
gr_reference_familiar_name (const struct gr_reference *r)
{
  if (strcmp (r->domain, GR_DEFAULT_DOMAIN) == 0)
    {
      if (strncmp (r->path, "library/", 8) == 0 && strchr (r->path + 8, '/') == NULL)
        return xstrdup (r->path + 8);
      return xstrdup (r->path);
    }
  return xasprintf ("%s/%s", r->domain, r->path);
}

char *
gr_reference_full_name (const struct gr_reference *r)
{
  return xasprintf ("%s/%s", r->domain, r->path);
}

char *
gr_reference_string (const struct gr_reference *r)
{
  cleanup_free char *name = gr_reference_familiar_name (r);
  return xasprintf ("%s%s%s%s%s", name, r->tag ? ":" : "", r->tag ? r->tag : "", r->digest ? "@" : "",
                    r->digest ? r->digest : "");
}

const char *
gr_reference_api_host (const struct gr_reference *r)
{
  if (strcmp (r->domain, GR_DEFAULT_DOMAIN) == 0)
    return "registry-1.docker.io";
  return r->domain;
}

/* ------------------------------------------------------------------ */
/* WWW-Authenticate                                                    */

static bool
is_tchar (char c)
{
  return c != '\0' && (isalnum ((unsigned char)c) || strchr ("!#$%&'*+-.^_`|~", c) != NULL);
}

void
gr_auth_challenges_free (struct gr_auth_challenge *c, size_t n)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < n; i++)
    {
      free (c[i].scheme);
      free (c[i].realm);
      free (c[i].service);
      free (c[i].scope);
      free (c[i].error);
    }
  free (c);
}

int
gr_auth_challenges_parse (struct gr_auth_challenge **out, size_t *n_out, const char *value, gr_error_t *err)
{
  struct gr_auth_challenge *c = NULL;
  size_t n = 0;
  const char *p = value;

  for (;;)
    {
      while (*p == ' ' || *p == '\t' || *p == ',')
        p++;
      if (*p == '\0')
        break;
      const char *tok = p;
      while (is_tchar (*p))
        p++;
      size_t tok_len = (size_t)(p - tok);
      if (tok_len == 0)
        {
          gr_auth_challenges_free (c, n);
          return gr_make_error (err, EINVAL, "malformed WWW-Authenticate header `%s`", value);
        }
      const char *q = p;
      while (*q == ' ' || *q == '\t')
        q++;
      if (*q != '=' || n == 0)
        {
          /* A new challenge: its scheme.  */
          c = xrealloc (c, (n + 1) * sizeof (*c));
          memset (&c[n], 0, sizeof (c[n]));
          c[n].scheme = xstrndup (tok, tok_len);
          for (char *s = c[n].scheme; *s; s++)
            *s = (char)tolower ((unsigned char)*s);
          n++;
          p = q;
          continue;
        }
      /* A parameter of the current challenge.  */
      p = q + 1;
      while (*p == ' ' || *p == '\t')
        p++;
      struct gr_buf val = { 0 };
      if (*p == '"')
        {
          p++;
          while (*p && *p != '"')
            {
              if (*p == '\\' && p[1])
                p++;
              gr_buf_append (&val, p, 1);
              p++;
            }
          if (*p != '"')
            {
              gr_buf_free (&val);
              gr_auth_challenges_free (c, n);
              return gr_make_error (err, EINVAL, "unterminated quote in WWW-Authenticate `%s`", value);
            }
          p++;
        }
      else
        {
          const char *v = p;
          while (*p && *p != ',' && *p != ' ' && *p != '\t')
            p++;
          gr_buf_append (&val, v, (size_t)(p - v));
        }
      char **slot = NULL;
      struct gr_auth_challenge *cur = &c[n - 1];
      if (tok_len == 5 && strncasecmp (tok, "realm", 5) == 0)
        slot = &cur->realm;
      else if (tok_len == 7 && strncasecmp (tok, "service", 7) == 0)
        slot = &cur->service;
      else if (tok_len == 5 && strncasecmp (tok, "scope", 5) == 0)
        slot = &cur->scope;
      else if (tok_len == 5 && strncasecmp (tok, "error", 5) == 0)
        slot = &cur->error;
      if (slot)
        {
          free (*slot);
          *slot = gr_buf_steal (&val);
        }
      gr_buf_free (&val);
    }
  *out = c;
  *n_out = n;
  return 0;
}

/* ------------------------------------------------------------------ */
/* platforms                                                           */

static char *
lower_dup (const char *s)
{
  char *r = xstrdup (s);
  for (char *p = r; *p; p++)
    *p = (char)tolower ((unsigned char)*p);
  return r;
}

/* Normalise as containerd's platforms.Normalize.  Takes ownership.  */
static void
platform_normalize (struct gr_platform *p)
{
  if (p->os)
    {
      char *os = lower_dup (p->os);
      free (p->os);
      p->os = os;
      if (strcmp (p->os, "macos") == 0)
        {
          free (p->os);
          p->os = xstrdup ("darwin");
        }
    }
  if (p->variant && *p->variant == '\0')
    {
      free (p->variant);
      p->variant = NULL;
    }
  if (p->arch == NULL)
    return;
  char *a = lower_dup (p->arch);
  free (p->arch);
  p->arch = a;
  const char *v = p->variant;
  if (strcmp (a, "i386") == 0)
    {
      free (p->arch);
      p->arch = xstrdup ("386");
      free (p->variant);
      p->variant = NULL;
    }
  else if (strcmp (a, "x86_64") == 0 || strcmp (a, "x86-64") == 0 || strcmp (a, "amd64") == 0)
    {
      free (p->arch);
      p->arch = xstrdup ("amd64");
      if (v && strcmp (v, "v1") == 0)
        {
          free (p->variant);
          p->variant = NULL;
        }
    }
  else if (strcmp (a, "aarch64") == 0 || strcmp (a, "arm64") == 0)
    {
      free (p->arch);
      p->arch = xstrdup ("arm64");
      if (v && (strcmp (v, "8") == 0 || strcmp (v, "v8") == 0))
        {
          free (p->variant);
          p->variant = NULL;
        }
    }
  else if (strcmp (a, "armhf") == 0)
    {
      free (p->arch);
      p->arch = xstrdup ("arm");
      free (p->variant);
      p->variant = xstrdup ("v7");
    }
  else if (strcmp (a, "armel") == 0)
    {
      free (p->arch);
      p->arch = xstrdup ("arm");
      free (p->variant);
      p->variant = xstrdup ("v6");
    }
  else if (strcmp (a, "arm") == 0)
    {
      if (v == NULL || strcmp (v, "7") == 0)
        {
          free (p->variant);
          p->variant = xstrdup ("v7");
        }
      else if (strcmp (v, "5") == 0 || strcmp (v, "6") == 0 || strcmp (v, "8") == 0)
        {
          char *nv = xasprintf ("v%s", v);
          free (p->variant);
          p->variant = nv;
        }
    }
}

void
gr_platform_clear (struct gr_platform *p)
{
  free (p->os);
  free (p->arch);
  free (p->variant);
  p->os = p->arch = p->variant = NULL;
}

int
gr_platform_parse (struct gr_platform *out, const char *s, gr_error_t *err)
{
  struct gr_platform p = { 0 };
  const char *s1 = strchr (s, '/');
  if (s1 == NULL || s1 == s || s1[1] == '\0' || s1[1] == '/')
    return gr_make_error (err, EINVAL, "invalid platform `%s`: expected os/arch[/variant]", s);
  const char *s2 = strchr (s1 + 1, '/');
  if (s2 && (s2[1] == '\0' || strchr (s2 + 1, '/')))
    return gr_make_error (err, EINVAL, "invalid platform `%s`: expected os/arch[/variant]", s);
  for (const char *c = s; *c; c++)
    if (!isalnum ((unsigned char)*c) && *c != '/' && *c != '_' && *c != '-' && *c != '.')
      return gr_make_error (err, EINVAL, "invalid platform `%s`", s);
  p.os = xstrndup (s, (size_t)(s1 - s));
  p.arch = s2 ? xstrndup (s1 + 1, (size_t)(s2 - s1 - 1)) : xstrdup (s1 + 1);
  p.variant = s2 ? xstrdup (s2 + 1) : NULL;
  platform_normalize (&p);
  *out = p;
  return 0;
}

void
gr_platform_default (struct gr_platform *out)
{
  struct utsname u;
  struct gr_platform p = { 0 };
  p.os = xstrdup ("linux");
  if (uname (&u) == 0)
    {
      if (strncmp (u.machine, "armv", 4) == 0)
        {
          p.arch = xstrdup ("arm");
          p.variant = xasprintf ("v%c", u.machine[4]);
        }
      else
        p.arch = xstrdup (u.machine);
    }
  else
    p.arch = xstrdup ("amd64");
  platform_normalize (&p);
  *out = p;
}

char *
gr_platform_string (const struct gr_platform *p)
{
  return xasprintf ("%s/%s%s%s", p->os ? p->os : "", p->arch ? p->arch : "", p->variant ? "/" : "",
                    p->variant ? p->variant : "");
}

static bool
streq0 (const char *a, const char *b)
{
  return strcmp (a ? a : "", b ? b : "") == 0;
}

bool
gr_platform_match (const struct gr_platform *want, const char *os, const char *arch, const char *variant)
{
  if (os == NULL || arch == NULL)
    return false;
  struct gr_platform p = { xstrdup (os), xstrdup (arch), variant ? xstrdup (variant) : NULL };
  platform_normalize (&p);
  bool ok = streq0 (want->os, p.os) && streq0 (want->arch, p.arch) && streq0 (want->variant, p.variant);
  gr_platform_clear (&p);
  return ok;
}

/* ------------------------------------------------------------------ */
/* manifests                                                           */

static void
descriptor_clear (struct gr_descriptor *d)
{
  free (d->media_type);
  free (d->digest);
  gr_platform_clear (&d->platform);
}

void
gr_manifest_free (struct gr_manifest *m)
{
  if (m == NULL)
    return;
  free (m->media_type);
  descriptor_clear (&m->config);
  for (size_t i = 0; i < m->n_layers; i++)
    descriptor_clear (&m->layers[i]);
  free (m->layers);
  for (size_t i = 0; i < m->n_manifests; i++)
    descriptor_clear (&m->manifests[i]);
  free (m->manifests);
  free (m);
}

static int
descriptor_parse (struct gr_descriptor *d, json_t *j, const char *what, gr_error_t *err)
{
  if (!json_is_object (j))
    return gr_make_error (err, EINVAL, "manifest: %s is not an object", what);
  json_t *mt = json_object_get (j, "mediaType");
  json_t *dg = json_object_get (j, "digest");
  json_t *sz = json_object_get (j, "size");
  if (mt && !json_is_string (mt))
    return gr_make_error (err, EINVAL, "manifest: %s mediaType is not a string", what);
  if (!json_is_string (dg))
    return gr_make_error (err, EINVAL, "manifest: %s has no digest", what);
  if (strncmp (json_string_value (dg), "sha256:", 7) != 0)
    return gr_make_error (err, EINVAL, "manifest: %s digest `%s`: unsupported algorithm", what,
                          json_string_value (dg));
  if (!gr_digest_valid (json_string_value (dg)))
    return gr_make_error (err, EINVAL, "manifest: %s digest `%s` is invalid", what, json_string_value (dg));
  if (!json_is_integer (sz) || json_integer_value (sz) < 0)
    return gr_make_error (err, EINVAL, "manifest: %s has no valid size", what);
  d->media_type = xstrdup (mt ? json_string_value (mt) : "");
  d->digest = xstrdup (json_string_value (dg));
  d->size = json_integer_value (sz);
  json_t *pl = json_object_get (j, "platform");
  if (json_is_object (pl))
    {
      json_t *os = json_object_get (pl, "os");
      json_t *arch = json_object_get (pl, "architecture");
      json_t *var = json_object_get (pl, "variant");
      if (json_is_string (os))
        d->platform.os = xstrdup (json_string_value (os));
      if (json_is_string (arch))
        d->platform.arch = xstrdup (json_string_value (arch));
      if (json_is_string (var) && *json_string_value (var))
        d->platform.variant = xstrdup (json_string_value (var));
    }
  return 0;
}

static bool
is_image_type (const char *mt)
{
  return strcmp (mt, GR_MT_DOCKER_MANIFEST) == 0 || strcmp (mt, GR_MT_OCI_MANIFEST) == 0;
}

static bool
is_index_type (const char *mt)
{
  return strcmp (mt, GR_MT_DOCKER_LIST) == 0 || strcmp (mt, GR_MT_OCI_INDEX) == 0;
}

static bool
is_schema1_type (const char *mt)
{
  return strcmp (mt, GR_MT_DOCKER_V1) == 0 || strcmp (mt, GR_MT_DOCKER_V1_SIGNED) == 0;
}

static void
json_cleanup (json_t **j)
{
  if (*j)
    json_decref (*j);
}

int
gr_manifest_parse (struct gr_manifest **out, const char *content_type, const void *data, size_t len,
                   gr_error_t *err)
{
  __attribute__ ((cleanup (json_cleanup))) json_t *doc = NULL;
  cleanup_manifest struct gr_manifest *m = NULL;
  cleanup_free char *ct = NULL;
  json_error_t jerr;

  if (len > GR_MANIFEST_MAX)
    return gr_make_error (err, EFBIG, "manifest is %zu bytes, more than the %d limit", len, GR_MANIFEST_MAX);
  if (content_type)
    {
      ct = xstrdup (content_type);
      char *semi = strchr (ct, ';');
      if (semi)
        *semi = '\0';
      for (char *e = ct + strlen (ct); e > ct && (e[-1] == ' ' || e[-1] == '\t'); e--)
        e[-1] = '\0';
    }
  doc = json_loadb (data, len, JSON_REJECT_DUPLICATES, &jerr);
  if (doc == NULL)
    return gr_make_error (err, EINVAL, "manifest: invalid JSON: %s", jerr.text);
  if (!json_is_object (doc))
    return gr_make_error (err, EINVAL, "manifest: not a JSON object");

  json_t *sv = json_object_get (doc, "schemaVersion");
  json_t *jmt = json_object_get (doc, "mediaType");
  json_t *jlayers = json_object_get (doc, "layers");
  json_t *jconfig = json_object_get (doc, "config");
  json_t *jmanifests = json_object_get (doc, "manifests");
  if (jmt && !json_is_string (jmt))
    return gr_make_error (err, EINVAL, "manifest: mediaType is not a string");
  const char *mt = jmt ? json_string_value (jmt) : NULL;

  if ((json_is_integer (sv) && json_integer_value (sv) == 1) || (mt && is_schema1_type (mt))
      || (ct && is_schema1_type (ct)))
    return gr_make_error (err, ENOTSUP,
                          "manifest: schema 1 manifests are not supported (push the image again "
                          "with a current client)");
  if (!json_is_integer (sv) || json_integer_value (sv) != 2)
    return gr_make_error (err, EINVAL, "manifest: unsupported schemaVersion");
  if (jmanifests && (jlayers || jconfig))
    return gr_make_error (err, EINVAL,
                          "manifest: ambiguous document: has both `manifests` and `layers`/`config`");

  if (mt && ct && (is_image_type (ct) || is_index_type (ct)) && strcmp (mt, ct) != 0)
    return gr_make_error (err, EINVAL, "manifest: mediaType `%s` does not match Content-Type `%s`", mt, ct);
  if (mt == NULL)
    {
      if (ct && (is_image_type (ct) || is_index_type (ct)))
        mt = ct;
      else if (jmanifests)
        mt = GR_MT_OCI_INDEX;
      else if (jconfig && jlayers)
        mt = GR_MT_OCI_MANIFEST;
      else
        return gr_make_error (err, EINVAL, "manifest: cannot tell the document type");
    }

  m = xzalloc (sizeof (*m));
  m->media_type = xstrdup (mt);
  if (is_image_type (mt))
    {
      if (jmanifests)
        return gr_make_error (err, EINVAL,
                              "manifest: ambiguous document: image manifest `%s` has "
                              "`manifests`",
                              mt);
      m->kind = GR_MANIFEST_IMAGE;
      if (!json_is_array (jlayers))
        return gr_make_error (err, EINVAL, "manifest: no `layers` array");
      if (descriptor_parse (&m->config, jconfig, "config", err) < 0)
        return -1;
      if (strcmp (m->config.media_type, GR_MT_DOCKER_CONFIG) != 0
          && strcmp (m->config.media_type, GR_MT_OCI_CONFIG) != 0)
        return gr_make_error (err, ENOTSUP, "manifest: config media type `%s` is not a container image",
                              m->config.media_type);
      size_t n = json_array_size (jlayers);
      m->layers = xzalloc ((n ? n : 1) * sizeof (*m->layers));
      for (size_t i = 0; i < n; i++)
        {
          cleanup_free char *what = xasprintf ("layer %zu", i);
          m->n_layers = i + 1;
          if (descriptor_parse (&m->layers[i], json_array_get (jlayers, i), what, err) < 0)
            return -1;
        }
    }
  else if (is_index_type (mt))
    {
      if (jlayers || jconfig)
        return gr_make_error (err, EINVAL, "manifest: ambiguous document: index `%s` has `layers`/`config`",
                              mt);
      m->kind = GR_MANIFEST_INDEX;
      if (!json_is_array (jmanifests))
        return gr_make_error (err, EINVAL, "manifest: index has no `manifests` array");
      size_t n = json_array_size (jmanifests);
      m->manifests = xzalloc ((n ? n : 1) * sizeof (*m->manifests));
      for (size_t i = 0; i < n; i++)
        {
          cleanup_free char *what = xasprintf ("manifests[%zu]", i);
          m->n_manifests = i + 1;
          if (descriptor_parse (&m->manifests[i], json_array_get (jmanifests, i), what, err) < 0)
            return -1;
        }
    }
  else
    return gr_make_error (err, ENOTSUP, "manifest: unsupported media type `%s`", mt);

  *out = gr_steal (m);
  return 0;
}

int
gr_manifest_select (const struct gr_descriptor **out, const struct gr_manifest *m,
                    const struct gr_platform *p, gr_error_t *err)
{
  if (m->kind != GR_MANIFEST_INDEX)
    return gr_make_error (err, EINVAL, "not an index");
  for (size_t i = 0; i < m->n_manifests; i++)
    {
      const struct gr_descriptor *d = &m->manifests[i];
      if (!is_image_type (d->media_type) && *d->media_type != '\0')
        continue;
      if (gr_platform_match (p, d->platform.os, d->platform.arch, d->platform.variant))
        {
          *out = d;
          return 0;
        }
    }
  cleanup_free char *ps = gr_platform_string (p);
  return gr_make_error (err, ENOENT, "no matching manifest for %s in the manifest list entries", ps);
}

/* ------------------------------------------------------------------ */
/* image config                                                        */

void
gr_image_config_free (struct gr_image_config *c)
{
  if (c == NULL)
    return;
  for (size_t i = 0; i < c->n_diff_ids; i++)
    free (c->diff_ids[i]);
  free (c->diff_ids);
  gr_platform_clear (&c->platform);
  free (c);
}

int
gr_image_config_parse (struct gr_image_config **out, const void *data, size_t len, gr_error_t *err)
{
  __attribute__ ((cleanup (json_cleanup))) json_t *doc = NULL;
  json_error_t jerr;
  doc = json_loadb (data, len, 0, &jerr);
  if (doc == NULL || !json_is_object (doc))
    return gr_make_error (err, EINVAL, "image config: invalid JSON: %s", doc ? "not an object" : jerr.text);
  json_t *rootfs = json_object_get (doc, "rootfs");
  json_t *type = json_object_get (rootfs, "type");
  json_t *ids = json_object_get (rootfs, "diff_ids");
  if (!json_is_object (rootfs) || !json_is_string (type) || strcmp (json_string_value (type), "layers") != 0
      || !json_is_array (ids))
    return gr_make_error (err, EINVAL, "image config: no rootfs of type `layers`");
  struct gr_image_config *c = xzalloc (sizeof (*c));
  size_t n = json_array_size (ids);
  c->diff_ids = xzalloc ((n ? n : 1) * sizeof (char *));
  for (size_t i = 0; i < n; i++)
    {
      json_t *d = json_array_get (ids, i);
      if (!json_is_string (d) || !gr_digest_valid (json_string_value (d)))
        {
          gr_image_config_free (c);
          return gr_make_error (err, EINVAL, "image config: diff_ids[%zu] is not a sha256 digest", i);
        }
      c->diff_ids[i] = xstrdup (json_string_value (d));
      c->n_diff_ids = i + 1;
    }
  json_t *os = json_object_get (doc, "os");
  json_t *arch = json_object_get (doc, "architecture");
  json_t *var = json_object_get (doc, "variant");
  c->platform.os = xstrdup (json_is_string (os) ? json_string_value (os) : "");
  c->platform.arch = xstrdup (json_is_string (arch) ? json_string_value (arch) : "");
  if (json_is_string (var) && *json_string_value (var))
    c->platform.variant = xstrdup (json_string_value (var));
  *out = c;
  return 0;
}

void
gr_chain_ids (char **chain, char *const *diff_ids, size_t n)
{
  for (size_t i = 0; i < n; i++)
    {
      if (i == 0)
        {
          chain[i] = xstrdup (diff_ids[0]);
          continue;
        }
      cleanup_free char *s = xasprintf ("%s %s", chain[i - 1], diff_ids[i]);
      char hex[GR_SHA256_HEX_LEN + 1];
      gr_sha256_hex (s, strlen (s), hex);
      chain[i] = xasprintf ("sha256:%s", hex);
    }
}

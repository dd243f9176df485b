#include "config.h"

#include "refstore.h"

#include "digest.h"
#include "fsutil.h"
#include "graphroot-internal.h"

#include <ctype.h>
#include <fcntl.h>
#include <string.h>

#define DEFAULT_DOMAIN "docker.io"
#define LEGACY_DOMAIN "index.docker.io"
#define OFFICIAL_PREFIX "library/"

/* A path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*  */
static bool
valid_component (const char *s, size_t n)
{
  size_t i = 0;
  if (n == 0)
    return false;
  for (;;)
    {
      size_t start = i;
      while (i < n && (islower ((unsigned char)s[i]) || isdigit ((unsigned char)s[i])))
        i++;
      if (i == start)
        return false;
      if (i == n)
        return true;
      /* a separator */
      if (s[i] == '.')
        i++;
      else if (s[i] == '_')
        i += (i + 1 < n && s[i + 1] == '_') ? 2 : 1;
      else if (s[i] == '-')
        while (i < n && s[i] == '-')
          i++;
      else
        return false;
      if (i == n)
        return false;
    }
}

static bool
valid_path (const char *s)
{
  while (*s)
    {
      const char *slash = strchr (s, '/');
      size_t n = slash ? (size_t)(slash - s) : strlen (s);
      if (!valid_component (s, n))
        return false;
      if (!slash)
        return true;
      s = slash + 1;
      if (*s == '\0')
        return false;
    }
  return false;
}

/* host components [a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])? joined by '.',
   then an optional :port.  */
static bool
valid_domain (const char *s, size_t n)
{
  const char *colon = memchr (s, ':', n);
  size_t host = colon ? (size_t)(colon - s) : n;
  if (host == 0)
    return false;
  size_t i = 0;
  while (i < host)
    {
      size_t start = i;
      while (i < host && (isalnum ((unsigned char)s[i]) || s[i] == '-'))
        i++;
      if (i == start || s[start] == '-' || s[i - 1] == '-')
        return false;
      if (i < host)
        {
          if (s[i] != '.')
            return false;
          i++;
          if (i == host)
            return false;
        }
    }
  if (colon)
    {
      if (host + 1 == n)
        return false;
      for (size_t k = host + 1; k < n; k++)
        if (!isdigit ((unsigned char)s[k]))
          return false;
    }
  return true;
}

int
gr_ref_normalize (char **out, const char *name, gr_error_t *err)
{
  if (name == NULL || name[0] == '\0')
    return gr_make_error (err, EINVAL, "empty repository name");
  const char *slash = strchr (name, '/');
  cleanup_free char *domain = NULL;
  const char *rest;
  bool is_domain = false;
  if (slash)
    {
      size_t n = (size_t)(slash - name);
      bool lower = true;
      for (size_t i = 0; i < n; i++)
        if (isupper ((unsigned char)name[i]))
          lower = false;
      is_domain = memchr (name, '.', n) || memchr (name, ':', n)
                  || (n == 9 && strncmp (name, "localhost", 9) == 0) || !lower;
    }
  if (is_domain)
    {
      domain = xstrndup (name, (size_t)(slash - name));
      rest = slash + 1;
      if (!valid_domain (domain, strlen (domain)))
        return gr_make_error (err, EINVAL, "invalid reference `%s`: bad registry host", name);
    }
  else
    {
      domain = xstrdup (DEFAULT_DOMAIN);
      rest = name;
    }
  if (strcmp (domain, LEGACY_DOMAIN) == 0)
    {
      free (domain);
      domain = xstrdup (DEFAULT_DOMAIN);
    }
  for (const char *c = rest; *c; c++)
    if (isupper ((unsigned char)*c))
      return gr_make_error (err, EINVAL, "invalid reference format: repository name must be lowercase");
  if (!valid_path (rest))
    return gr_make_error (err, EINVAL, "invalid reference format: `%s`", name);
  char *full;
  if (strcmp (domain, DEFAULT_DOMAIN) == 0 && strchr (rest, '/') == NULL)
    full = xasprintf ("%s/%s%s", domain, OFFICIAL_PREFIX, rest);
  else
    full = xasprintf ("%s/%s", domain, rest);
  if (strlen (full) - strlen (domain) - 1 > 255)
    {
      free (full);
      return gr_make_error (err, EINVAL, "repository name must not be more than 255 characters");
    }
  *out = full;
  return 0;
}

int
gr_ref_familiar (char **out, const char *name, gr_error_t *err)
{
  cleanup_free char *full = NULL;
  if (gr_ref_normalize (&full, name, err) < 0)
    return -1;
  const char *p = full;
  if (strncmp (p, DEFAULT_DOMAIN "/", strlen (DEFAULT_DOMAIN) + 1) == 0)
    {
      p += strlen (DEFAULT_DOMAIN) + 1;
      if (strncmp (p, OFFICIAL_PREFIX, strlen (OFFICIAL_PREFIX)) == 0
          && strchr (p + strlen (OFFICIAL_PREFIX), '/') == NULL)
        p += strlen (OFFICIAL_PREFIX);
    }
  *out = xstrdup (p);
  return 0;
}

static bool
valid_tag (const char *t)
{
  size_t n = strlen (t);
  if (n == 0 || n > 128 || !(isalnum ((unsigned char)t[0]) || t[0] == '_'))
    return false;
  for (size_t i = 0; i < n; i++)
    if (!(isalnum ((unsigned char)t[i]) || t[i] == '_' || t[i] == '.' || t[i] == '-'))
      return false;
  return true;
}

#define REPOSITORIES "repositories.json"

static int
load_locked (struct gr_graphroot *root, json_t **out, gr_error_t *err)
{
  cleanup_free char *data = NULL;
  size_t len = 0;
  if (gr_read_file_at (&data, &len, root->image_fd, REPOSITORIES, 0, err) < 0)
    {
      if (gr_error_status (err) != ENOENT)
        return -1;
      gr_error_release (err);
      *out = json_pack ("{s:{}}", "Repositories");
      return 0;
    }
  json_error_t jerr;
  json_t *j = json_loadb (data, len, 0, &jerr);
  if (j == NULL || !json_is_object (j))
    {
      json_decref (j);
      return gr_make_error (err, EINVAL, "%s: invalid JSON: %s", REPOSITORIES, jerr.text);
    }
  json_t *repos = json_object_get (j, "Repositories");
  if (repos == NULL || json_is_null (repos))
    json_object_set_new (j, "Repositories", json_object ());
  else if (!json_is_object (repos))
    {
      json_decref (j);
      return gr_make_error (err, EINVAL, "%s: Repositories is not an object", REPOSITORIES);
    }
  *out = j;
  return 0;
}

int
gr_refstore_load (struct gr_graphroot *root, json_t **out, gr_error_t *err)
{
  gr_graphroot_lock (root);
  int r = load_locked (root, out, err);
  gr_graphroot_unlock (root);
  return r;
}

int
gr_refstore_add (struct gr_graphroot *root, const char *name, const char *tag, const char *digest,
                 const char *image_id, gr_error_t *err)
{
  cleanup_free char *familiar = NULL;
  if (gr_graphroot_check_writable (root, err) < 0 || gr_ref_familiar (&familiar, name, err) < 0)
    return -1;
  if (!gr_digest_valid (image_id))
    return gr_make_error (err, EINVAL, "invalid image ID `%s`", image_id ? image_id : "");
  if (tag && !valid_tag (tag))
    return gr_make_error (err, EINVAL, "invalid tag `%s`", tag);
  if (digest && !gr_digest_valid (digest))
    return gr_make_error (err, EINVAL, "invalid digest `%s`", digest);

  gr_graphroot_lock (root);
  json_t *j = NULL;
  int ret = load_locked (root, &j, err);
  if (ret == 0)
    {
      json_t *repos = json_object_get (j, "Repositories");
      json_t *repo = json_object_get (repos, familiar);
      if (!json_is_object (repo))
        {
          repo = json_object ();
          json_object_set_new (repos, familiar, repo);
        }
      bool changed = false;
      if (digest)
        {
          /* As dockerd's addDigestReference: an existing digest reference
             is never repointed.  */
          cleanup_free char *key = xasprintf ("%s@%s", familiar, digest);
          if (json_object_get (repo, key) == NULL)
            {
              json_object_set_new (repo, key, json_string (image_id));
              changed = true;
            }
        }
      if (tag)
        {
          cleanup_free char *key = xasprintf ("%s:%s", familiar, tag);
          const char *old = json_string_value (json_object_get (repo, key));
          if (old == NULL || strcmp (old, image_id) != 0)
            {
              json_object_set_new (repo, key, json_string (image_id));
              changed = true;
            }
        }
      if (changed)
        {
          cleanup_free char *data = json_dumps (j, JSON_COMPACT | JSON_SORT_KEYS);
          ret = gr_write_file_atomic (root->image_fd, REPOSITORIES, data, strlen (data), 0600, err);
        }
    }
  gr_graphroot_unlock (root);
  json_decref (j);
  if (ret < 0)
    return gr_error_wrap (err, "add reference %s", familiar);
  return 0;
}

int
gr_refstore_lookup (struct gr_graphroot *root, char **image_id, const char *ref, gr_error_t *err)
{
  cleanup_free char *name = xstrdup (ref);
  const char *sep = ":";
  const char *what = "latest";
  char *at = strchr (name, '@');
  if (at)
    {
      *at = '\0';
      sep = "@";
      what = at + 1;
    }
  else
    {
      char *slash = strrchr (name, '/');
      char *colon = strrchr (slash ? slash : name, ':');
      if (colon)
        {
          *colon = '\0';
          what = colon + 1;
        }
    }
  cleanup_free char *familiar = NULL;
  if (gr_ref_familiar (&familiar, name, err) < 0)
    return -1;
  cleanup_free char *key = xasprintf ("%s%s%s", familiar, sep, what);
  json_t *j = NULL;
  if (gr_refstore_load (root, &j, err) < 0)
    return -1;
  const char *id = json_string_value (
      json_object_get (json_object_get (json_object_get (j, "Repositories"), familiar), key));
  int ret = 0;
  if (id)
    {
      *image_id = xstrdup (id);
      ret = 1;
    }
  json_decref (j);
  return ret;
}

#include "config.h"

#include "distmeta.h"

#include "digest.h"
#include "fsutil.h"
#include "graphroot-internal.h"

#include <fcntl.h>
#include <string.h>

#define MAX_METADATA 50 /* as dockerd's v2MetadataService */

static int
write_meta (struct gr_graphroot *root, const char *ns, const char *hex, const char *data, gr_error_t *err)
{
  cleanup_free char *dir = xasprintf ("distribution/%s/sha256", ns);
  cleanup_free char *file = xasprintf ("%s/%s", dir, hex);
  if (gr_mkdir_p_at (root->image_fd, dir, 0755, err) < 0
      || gr_write_file_atomic (root->image_fd, file, data, strlen (data), 0644, err) < 0)
    return gr_error_wrap (err, "distribution metadata");
  return 0;
}

static int
load_v2 (struct gr_graphroot *root, json_t **out, const char *diff_id, gr_error_t *err)
{
  cleanup_free char *file = xasprintf ("distribution/v2metadata-by-diffid/sha256/%s", diff_id + 7);
  cleanup_free char *data = NULL;
  size_t len = 0;
  if (gr_read_file_at (&data, &len, root->image_fd, file, 0, err) < 0)
    {
      if (gr_error_status (err) != ENOENT)
        return -1;
      gr_error_release (err);
      *out = json_array ();
      return 0;
    }
  json_t *j = json_loadb (data, len, 0, NULL);
  if (!json_is_array (j))
    {
      /* dockerd treats unreadable metadata as none */
      json_decref (j);
      j = json_array ();
    }
  *out = j;
  return 0;
}

int
gr_distmeta_add (struct gr_graphroot *root, const char *blob_digest, const char *diff_id,
                 const char *source_repo, gr_error_t *err)
{
  if (!gr_digest_valid (blob_digest) || !gr_digest_valid (diff_id))
    return gr_make_error (err, EINVAL, "invalid digest `%s` or diffID `%s`", blob_digest ? blob_digest : "",
                          diff_id ? diff_id : "");
  if (source_repo == NULL || source_repo[0] == '\0')
    return gr_make_error (err, EINVAL, "no source repository");
  if (gr_graphroot_check_writable (root, err) < 0)
    return -1;

  gr_graphroot_lock (root);
  json_t *old = NULL;
  int ret = load_v2 (root, &old, diff_id, err);
  if (ret == 0)
    {
      json_t *arr = json_array ();
      size_t i;
      json_t *v;
      json_array_foreach (old, i, v)
      {
        const char *d = json_string_value (json_object_get (v, "Digest"));
        const char *s = json_string_value (json_object_get (v, "SourceRepository"));
        const char *h = json_string_value (json_object_get (v, "HMAC"));
        if (d && s && strcmp (d, blob_digest) == 0 && strcmp (s, source_repo) == 0
            && (h == NULL || h[0] == '\0'))
          continue;
        json_array_append (arr, v);
      }
      json_t *e = json_object ();
      json_object_set_new (e, "Digest", json_string (blob_digest));
      json_object_set_new (e, "SourceRepository", json_string (source_repo));
      json_object_set_new (e, "HMAC", json_string (""));
      json_array_append_new (arr, e);
      while (json_array_size (arr) > MAX_METADATA)
        json_array_remove (arr, 0);
      cleanup_free char *data = json_dumps (arr, JSON_COMPACT);
      json_decref (arr);
      ret = write_meta (root, "v2metadata-by-diffid", diff_id + 7, data, err);
      if (ret == 0)
        ret = write_meta (root, "diffid-by-digest", blob_digest + 7, diff_id, err);
    }
  gr_graphroot_unlock (root);
  json_decref (old);
  return ret;
}

int
gr_distmeta_diff_id_by_digest (struct gr_graphroot *root, char **diff_id, const char *blob_digest,
                               gr_error_t *err)
{
  if (!gr_digest_valid (blob_digest))
    return gr_make_error (err, EINVAL, "invalid digest `%s`", blob_digest ? blob_digest : "");
  cleanup_free char *file = xasprintf ("distribution/diffid-by-digest/sha256/%s", blob_digest + 7);
  cleanup_free char *data = NULL;
  if (gr_read_file_at (&data, NULL, root->image_fd, file, 4096, err) < 0)
    {
      if (gr_error_status (err) != ENOENT)
        return -1;
      gr_error_release (err);
      return 0;
    }
  if (!gr_digest_valid (data))
    return 0;
  *diff_id = gr_steal (data);
  return 1;
}

int
gr_distmeta_by_diff_id (struct gr_graphroot *root, json_t **out, const char *diff_id, gr_error_t *err)
{
  if (!gr_digest_valid (diff_id))
    return gr_make_error (err, EINVAL, "invalid diffID `%s`", diff_id ? diff_id : "");
  return load_v2 (root, out, diff_id, err);
}

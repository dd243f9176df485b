#include "config.h"

#include "imagestore.h"

#include "digest.h"
#include "fsutil.h"
#include "graphroot-internal.h"

#include <fcntl.h>
#include <jansson.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

/* "sha256:<hex>" or "<hex>" -> the hex part, or NULL.  */
static const char *
image_hex (const char *id)
{
  if (id == NULL)
    return NULL;
  if (strncmp (id, "sha256:", 7) == 0)
    id += 7;
  return gr_hex64_valid (id) ? id : NULL;
}

int
gr_imagestore_top_layer (char out[GR_DIGEST_LEN + 1], const void *config, size_t len, gr_error_t *err)
{
  json_error_t jerr;
  json_t *j = json_loadb (config, len, 0, &jerr);
  int ret = 0;
  out[0] = '\0';
  if (j == NULL || !json_is_object (j))
    {
      ret = gr_make_error (err, EINVAL, "image config is not a JSON object: %s", j ? "" : jerr.text);
      goto out;
    }
  json_t *rootfs = json_object_get (j, "rootfs");
  const char *type = json_string_value (json_object_get (rootfs, "type"));
  json_t *diff_ids = json_object_get (rootfs, "diff_ids");
  if (type == NULL || strcmp (type, "layers") != 0)
    {
      ret = gr_make_error (err, EINVAL, "image config: rootfs.type is not \"layers\"");
      goto out;
    }
  if (diff_ids != NULL && !json_is_array (diff_ids) && !json_is_null (diff_ids))
    {
      ret = gr_make_error (err, EINVAL, "image config: rootfs.diff_ids is not an array");
      goto out;
    }
  size_t i;
  json_t *v;
  json_array_foreach (diff_ids, i, v)
  {
    char next[GR_DIGEST_LEN + 1];
    if ((ret = gr_layer_chain_id (next, out[0] ? out : NULL, json_string_value (v), err)) < 0)
      {
        gr_error_wrap (err, "image config: rootfs.diff_ids[%zu]", i);
        goto out;
      }
    memcpy (out, next, sizeof (next));
  }
  /* As dockerd: no more non-empty history entries than layers.  */
  size_t non_empty = 0;
  json_array_foreach (json_object_get (j, "history"), i,
                      v) if (!json_is_true (json_object_get (v, "empty_layer"))) non_empty++;
  if (non_empty > json_array_size (diff_ids))
    ret = gr_make_error (err, EINVAL, "image config: too many non-empty layers in History section");
out:
  json_decref (j);
  return ret;
}

int
gr_imagestore_put (struct gr_graphroot *root, char id_out[GR_DIGEST_LEN + 1], const void *config, size_t len,
                   gr_error_t *err)
{
  char hex[GR_SHA256_HEX_LEN + 1];
  char top[GR_DIGEST_LEN + 1];
  if (gr_graphroot_check_writable (root, err) < 0)
    return -1;
  gr_sha256_hex (config, len, hex);
  if (gr_imagestore_top_layer (top, config, len, err) < 0)
    return gr_error_wrap (err, "image sha256:%s", hex);
  if (top[0] && !gr_layerstore_has (root, top))
    return gr_make_error (err, ENOENT, "image sha256:%s: top layer %s is not registered", hex, top);
  cleanup_free char *rel = xasprintf ("imagedb/content/sha256/%s", hex);
  cleanup_free char *meta = xasprintf ("imagedb/metadata/sha256/%s", hex);
  struct stat st;
  if (fstatat (root->image_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0 || (size_t)st.st_size != len)
    {
      if (gr_write_file_atomic (root->image_fd, rel, config, len, 0600, err) < 0)
        return gr_error_wrap (err, "image sha256:%s", hex);
    }
  if (id_out)
    snprintf (id_out, GR_DIGEST_LEN + 1, "sha256:%s", hex);
  return 0;
}

bool
gr_imagestore_has (struct gr_graphroot *root, const char *image_id)
{
  const char *hex = image_hex (image_id);
  if (hex == NULL)
    return false;
  cleanup_free char *rel = xasprintf ("imagedb/content/sha256/%s", hex);
  struct stat st;
  return fstatat (root->image_fd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG (st.st_mode);
}

int
gr_imagestore_get (struct gr_graphroot *root, char **config, size_t *len, const char *image_id,
                   gr_error_t *err)
{
  const char *hex = image_hex (image_id);
  if (hex == NULL)
    return gr_make_error (err, EINVAL, "invalid image ID `%s`", image_id ? image_id : "");
  cleanup_free char *rel = xasprintf ("imagedb/content/sha256/%s", hex);
  cleanup_free char *data = NULL;
  size_t n = 0;
  if (gr_read_file_at (&data, &n, root->image_fd, rel, 0, err) < 0)
    return gr_error_wrap (err, "image sha256:%s", hex);
  char got[GR_SHA256_HEX_LEN + 1];
  gr_sha256_hex (data, n, got);
  if (strcmp (got, hex) != 0)
    return gr_make_error (err, EIO, "image sha256:%s: content has digest sha256:%s", hex, got);
  *config = gr_steal (data);
  if (len)
    *len = n;
  return 0;
}

int
gr_imagestore_set_last_updated (struct gr_graphroot *root, const char *image_id, gr_error_t *err)
{
  const char *hex = image_hex (image_id);
  if (hex == NULL)
    return gr_make_error (err, EINVAL, "invalid image ID `%s`", image_id ? image_id : "");
  if (gr_graphroot_check_writable (root, err) < 0)
    return -1;
  struct timespec ts;
  clock_gettime (CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r (&ts.tv_sec, &tm);
  char date[64], frac[16] = "";
  strftime (date, sizeof (date), "%Y-%m-%dT%H:%M:%S", &tm);
  if (ts.tv_nsec)
    {
      /* RFC3339Nano: trailing zeros of the fraction dropped.  */
      snprintf (frac, sizeof (frac), ".%09ld", ts.tv_nsec);
      size_t n = strlen (frac);
      while (n > 1 && frac[n - 1] == '0')
        frac[--n] = '\0';
    }
  cleanup_free char *value = xasprintf ("%s%sZ", date, frac);
  cleanup_free char *dir = xasprintf ("imagedb/metadata/sha256/%s", hex);
  cleanup_free char *file = xasprintf ("%s/lastUpdated", dir);
  if (gr_mkdir_p_at (root->image_fd, dir, 0700, err) < 0
      || gr_write_file_atomic (root->image_fd, file, value, strlen (value), 0600, err) < 0)
    return gr_error_wrap (err, "image sha256:%s", hex);
  return 0;
}

int
gr_imagestore_list (struct gr_graphroot *root, json_t **out, gr_error_t *err)
{
  cleanup_close int dfd = gr_open_dir_at (root->image_fd, "imagedb/content/sha256", err);
  if (dfd < 0)
    return -1;
  cleanup_dir DIR *d = gr_dir_open_fd (dfd, err);
  if (d == NULL)
    return -1;
  json_t *arr = json_array ();
  for (struct dirent *de; (de = readdir (d));)
    if (gr_hex64_valid (de->d_name))
      json_array_append_new (arr, json_sprintf ("sha256:%s", de->d_name));
  *out = arr;
  return 0;
}

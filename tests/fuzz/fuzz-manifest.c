/* libFuzzer target: registry documents as a hostile registry may serve
   them.  The first byte picks the parser and the Content-Type: manifest or
   index (then a platform is selected from it), or image config.
   Asserted: no crash (ASan/UBSan), no leak; a parsed manifest holds only
   the descriptors it claims.  */
#include "config.h"

#include "registry.h"

#include <string.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static const char *const types[] = {
  NULL,
  "application/vnd.docker.distribution.manifest.v2+json",
  "application/vnd.docker.distribution.manifest.list.v2+json",
  "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.oci.image.index.v1+json",
  "application/json",
  "text/plain",
};
#define N_TYPES (sizeof (types) / sizeof (types[0]))

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  gr_error_t err = NULL;
  unsigned sel = 0;
  if (size > 0)
    {
      sel = data[0];
      data++;
      size--;
    }
  if (sel % 8 == 7)
    {
      struct gr_image_config *c = NULL;
      if (gr_image_config_parse (&c, data, size, &err) == 0)
        {
          for (size_t i = 0; i < c->n_diff_ids; i++)
            if (c->diff_ids[i] == NULL || strlen (c->diff_ids[i]) != 71)
              abort ();
          if (c->n_diff_ids > 0)
            {
              char **chain = xzalloc (c->n_diff_ids * sizeof (char *));
              gr_chain_ids (chain, c->diff_ids, c->n_diff_ids);
              for (size_t i = 0; i < c->n_diff_ids; i++)
                free (chain[i]);
              free (chain);
            }
          gr_image_config_free (c);
        }
      gr_error_release (&err);
      return 0;
    }
  struct gr_manifest *m = NULL;
  if (gr_manifest_parse (&m, types[sel % N_TYPES], data, size, &err) == 0)
    {
      if (m->kind == GR_MANIFEST_INDEX)
        {
          const struct gr_descriptor *d = NULL;
          struct gr_platform p;
          memset (&p, 0, sizeof p);
          gr_platform_default (&p);
          if (gr_manifest_select (&d, m, &p, &err) == 0 && d == NULL)
            abort ();
          gr_error_release (&err);
          gr_platform_clear (&p);
        }
      else
        for (size_t i = 0; i < m->n_layers; i++)
          if (m->layers[i].digest == NULL)
            abort ();
      gr_manifest_free (m);
    }
  gr_error_release (&err);
  return 0;
}

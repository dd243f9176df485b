#include "config.h"

#include "driver.h"

#include "fsutil.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

static const struct gr_backend_ops *const backends[] = {
  &gr_backend_aufs,
  &gr_backend_overlay2,
  &gr_backend_vfs,
};

const struct gr_backend_ops *
gr_backend_lookup (const char *name)
{
  for (size_t i = 0; i < sizeof (backends) / sizeof (backends[0]); i++)
    if (strcmp (backends[i]->name, name) == 0)
      return backends[i];
  return NULL;
}

int
gr_driver_open (struct gr_driver **out, const char *name, const char *home,
                const struct gr_driver_opts *opts, gr_error_t *err)
{
  const struct gr_backend_ops *ops = gr_backend_lookup (name);
  struct gr_driver *d = NULL;

  if (ops == NULL)
    return gr_make_error (err, EINVAL, "unknown storage backend `%s`", name);
  if (home == NULL || home[0] != '/')
    return gr_make_error (err, EINVAL, "driver home `%s` is not an absolute path", home ? home : "");
  if (gr_mkdir_p_at (AT_FDCWD, home, 0710, err) < 0)
    return gr_error_wrap (err, "driver home");
  d = xzalloc (sizeof (*d));
  d->ops = ops;
  d->home = xstrdup (home);
  d->home_fd = open (home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (d->home_fd < 0)
    {
      gr_make_error (err, errno, "open driver home `%s`", home);
      gr_driver_free (d);
      return -1;
    }
  if (ops->init (d, opts, err) < 0)
    {
      gr_driver_free (d);
      return gr_error_wrap (err, "%s driver at `%s`", name, home);
    }
  *out = d;
  return 0;
}

void
gr_driver_free (struct gr_driver *d)
{
  if (d == NULL)
    return;
  if (d->ops && d->ops->release && d->priv)
    d->ops->release (d);
  if (d->home_fd >= 0)
    close (d->home_fd);
  free (d->home);
  free (d);
}

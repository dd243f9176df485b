/* A storage driver ("backend") behind one function table: aufs, overlay2, vfs.  */
#ifndef GR_DRIVER_H
#define GR_DRIVER_H

#include "archive.h"
#include "utils.h"

#include <jansson.h>
#include <pthread.h>

struct gr_driver;

struct gr_driver_opts
{
  const char *mount_method; /* "auto" (NULL), "aufs", "overlay" */
  const char *const *opts;  /* key=value, as dockerd's --storage-opt */
  size_t n_opts;
};

struct gr_backend_ops
{
  const char *name;
  int (*init) (struct gr_driver *d, const struct gr_driver_opts *opts, gr_error_t *err);
  void (*release) (struct gr_driver *d);
  /* Create an empty layer ID on top of PARENT (NULL or "" for none).  */
  int (*create) (struct gr_driver *d, const char *id, const char *parent, bool rw, gr_error_t *err);
  int (*remove) (struct gr_driver *d, const char *id, gr_error_t *err);
  /* Mount (reference counted) and return the layer's root path.  */
  int (*get) (struct gr_driver *d, char **path, const char *id, gr_error_t *err);
  int (*put) (struct gr_driver *d, const char *id, gr_error_t *err);
  bool (*exists) (struct gr_driver *d, const char *id);
  int (*apply_diff) (struct gr_driver *d, int64_t *size, const char *id, const char *parent,
                     int tar_fd, gr_error_t *err);
  int (*diff) (struct gr_driver *d, int out_fd, const char *id, const char *parent, gr_error_t *err);
  int (*changes) (struct gr_driver *d, json_t **out, const char *id, const char *parent,
                  gr_error_t *err);
  int (*diff_size) (struct gr_driver *d, int64_t *size, const char *id, const char *parent,
                    gr_error_t *err);
  /* [["key","value"],...] */
  json_t *(*status) (struct gr_driver *d);
  int (*metadata) (struct gr_driver *d, json_t **out, const char *id, gr_error_t *err);
  /* Unmount everything this driver mounted.  */
  int (*cleanup) (struct gr_driver *d, gr_error_t *err);
};

struct gr_driver
{
  const struct gr_backend_ops *ops;
  char *home;  /* absolute path of the driver's root, e.g. /var/lib/docker/aufs */
  int home_fd; /* O_DIRECTORY fd of home */
  void *priv;  /* backend state */
};

/* Open (creating it if needed) the driver NAME ("aufs", "overlay2", "vfs")
   rooted at HOME.  */
int gr_driver_open (struct gr_driver **out, const char *name, const char *home,
                    const struct gr_driver_opts *opts, gr_error_t *err);
void gr_driver_free (struct gr_driver *d);
const struct gr_backend_ops *gr_backend_lookup (const char *name);

extern const struct gr_backend_ops gr_backend_aufs;
extern const struct gr_backend_ops gr_backend_overlay2;
extern const struct gr_backend_ops gr_backend_vfs;

#endif

/* A Docker graph root (dockerd's --data-root) opened for writing images as
   `docker pull` would: the storage driver's layer directories plus the
   image-side stores under `image/<driver-name>/`.  */
#ifndef GR_GRAPHROOT_H
#define GR_GRAPHROOT_H

#include "driver.h"
#include "utils.h"

#include <pthread.h>
#include <sys/types.h>

struct gr_layer_writer;

struct gr_graphroot
{
  char *root;               /* absolute path of the data root, e.g. /var/lib/docker */
  char *driver_name;        /* as dockerd names it: overlay2, vfs, aufs, aufs-graphdriver */
  int root_fd;              /* O_DIRECTORY fd of root */
  int image_fd;             /* O_DIRECTORY fd of <root>/image/<driver_name>; holds a
                               shared flock() while open */
  int lock_fd;              /* another fd of the data root dir, for exclusive flock()s */
  struct gr_driver *driver; /* the backend, home <root>/<driver_name> */
  /* Serialises read-modify-write of shared files (repositories.json,
     v2metadata) and layer registration inside this process; across
     processes the same sections also take flock() on lock_fd.  */
  pthread_mutex_t lock;
  pthread_cond_t cond;             /* signalled when a pending layer writer finishes */
  struct gr_layer_writer *pending; /* writers not yet committed (list) */
  /* Backend layers of aborted writers whose removal was refused because a
     child (another aborted writer's layer) still stood on them: retried
     each time a writer is freed.  Under lock.  */
  char **orphans;
  size_t n_orphans;
  bool readonly; /* gr_graphroot_open_readonly: no driver, no writes */
};

/* Open (creating what is missing) the graph root ROOT_DIR for the storage
   driver DRIVER_NAME as dockerd names it:
     "overlay2"          -> backend overlay2, dirs overlay2/ and image/overlay2/
     "vfs"               -> backend vfs, dirs vfs/ and image/vfs/
     "aufs"              -> backend aufs (Docker <= 23 built-in), aufs/, image/aufs/
     "aufs-graphdriver"  -> backend aufs (our legacy plugin), aufs-graphdriver/,
                            image/aufs-graphdriver/
   Creates image/<D>/{imagedb/content/sha256,imagedb/metadata/sha256,
   layerdb/sha256,layerdb/tmp,distribution} as dockerd does (0700 for the
   image dirs).  If no other process has the root open, removes what
   interrupted layer writers left (layerdb/tmp/write-set-* and the backend
   layers they name).  Does
   NOT check for a running dockerd: call gr_graphroot_dockerd_running()
   first.  */
int gr_graphroot_open (struct gr_graphroot **out, const char *root_dir, const char *driver_name,
                       gr_error_t *err);
/* The same for a storage driver dockerd knows under another name (a
   graphdriver plugin such as "aufs-graphdriver-test", or a managed plugin)
   with backend BACKEND ("aufs", "overlay2", "vfs") and layers in HOME (an
   absolute path; NULL means <root>/<driver_name>).  A managed plugin with
   PropagatedMount /data keeps its layers in
   <root>/plugins/<plugin id>/propagated-mount/<driver_name>.  */
int gr_graphroot_open_with (struct gr_graphroot **out, const char *root_dir, const char *driver_name,
                            const char *backend, const char *home, gr_error_t *err);
/* Open an existing graph root only to read its image-side stores (images,
   references, layers' metadata; root->driver is NULL): creates nothing,
   cleans nothing up, takes no lifetime lock, so it is safe beside a running
   dockerd, whose writes are all atomic renames.  The writing functions
   refuse such a root (EROFS).  */
int gr_graphroot_open_readonly (struct gr_graphroot **out, const char *root_dir, const char *driver_name,
                                gr_error_t *err);
/* Fail with EROFS if ROOT was opened read-only.  */
int gr_graphroot_check_writable (struct gr_graphroot *root, gr_error_t *err);
/* NULL-safe.  Every layer writer of ROOT must have been freed.  */
void gr_graphroot_free (struct gr_graphroot *root);

/* The backend name ("aufs", "overlay2", "vfs") for a dockerd driver name,
   or NULL if unknown.  */
const char *gr_graphroot_backend_for (const char *driver_name);

/* Is a dockerd using ROOT_DIR as its data root running?  Scans
   /proc/<pid>/cmdline of every process named dockerd for --data-root / -g /
   --graph (default /var/lib/docker; a --config-file or daemon.json
   "data-root" is read too) and compares the resolved directories.
   Returns 1 (and *PID if PID is not NULL) if one is, 0 if none, <0 on
   error.  */
int gr_graphroot_dockerd_running (pid_t *pid, const char *root_dir, gr_error_t *err);

#endif

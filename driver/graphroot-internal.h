/* Private to the image-side store files (graphroot, layerstore,
   imagestore, refstore, distmeta).  */
#ifndef GR_GRAPHROOT_INTERNAL_H
#define GR_GRAPHROOT_INTERNAL_H

#include "graphroot.h"

#include <assert.h>

/* Exclusive section over ROOT: its mutex plus flock(lock_fd, LOCK_EX).  */
void gr_graphroot_lock (struct gr_graphroot *root);
void gr_graphroot_unlock (struct gr_graphroot *root);

#endif

/* Private to the image-side store files (graphroot, layerstore,
   imagestore, refstore, distmeta).  */
#ifndef GR_GRAPHROOT_INTERNAL_H
#define GR_GRAPHROOT_INTERNAL_H

#include "graphroot.h"

#include <assert.h>

/* Exclusive section over ROOT: its mutex plus flock(lock_fd, LOCK_EX).  */
void gr_graphroot_lock (struct gr_graphroot *root);
void gr_graphroot_unlock (struct gr_graphroot *root);

/* Does dockerd use overlay2's native diff on this kernel (backend-overlay2.c)?
   If not, it records a layer's size as the sum of the tar's size fields.  */
bool gr_overlay2_native_diff (void);

#endif

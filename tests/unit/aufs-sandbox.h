/* For the CUnit programs that drive the aufs backend: a driver opened in
   the suite sandbox (overlay mounts), and a teardown that unmounts what a
   test left mounted before removing the sandbox.  */
#ifndef GR_AUFS_SANDBOX_H
#define GR_AUFS_SANDBOX_H

#include "driver.h"
#include "mount.h"
#include "unit.h"

static inline int
unit_aufs_teardown (void)
{
  if (unit_sandbox)
    gr_unmount_below (unit_sandbox, NULL);
  return unit_sandbox_teardown ();
}

/* The aufs backend with its Home at <sandbox>/NAME.  */
static inline struct gr_driver *
unit_open_aufs (const char *name)
{
  cleanup_free char *home = xasprintf ("%s/%s", unit_sandbox, name);
  struct gr_driver *d = NULL;
  struct gr_driver_opts opts = { .mount_method = "overlay" };
  ASSERT_OK (gr_driver_open (&d, "aufs", home, &opts, err_));
  return d;
}

#endif

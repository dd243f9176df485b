/* Union mounts of layer directories: kernel aufs where it exists, overlayfs
   otherwise.  */
#ifndef GR_MOUNT_H
#define GR_MOUNT_H

#include "utils.h"

/* Does /proc/filesystems list FSTYPE ("aufs", "overlay")?  */
bool gr_mount_fs_supported (const char *fstype);

/* Mount an overlay at TARGET: UPPER (rw) over LOWERS (nearest first),
   WORK its work dir; with UPPER and WORK NULL, read-only over LOWERS alone
   (at least two; nothing to sync at unmount).  Any number of lowers up to
   the kernel's limit (500): directories are passed as /proc/self/fd/N so
   the page-size limit on mount options is never reached.  */
int gr_mount_overlay (const char *target, const char *upper, const char *work,
                      const char *const *lowers, size_t n_lowers, const char *mount_label,
                      gr_error_t *err);

/* Mount kernel aufs at TARGET with branch RW over RO (nearest first),
   appending the branches past the page-size limit with remounts.  */
int gr_mount_aufs (const char *target, const char *rw, const char *const *ro, size_t n_ro,
                   const char *mount_label, gr_error_t *err);

/* Lazy unmount (MNT_DETACH); not mounted is not an error.  */
int gr_unmount (const char *target, gr_error_t *err);

/* Is PATH the target of a mount in this namespace (per mountinfo)?  */
bool gr_mount_is_mountpoint (const char *path);

/* Unmount every mount whose target lies strictly below DIR.  Returns the
   number unmounted.  */
int gr_unmount_below (const char *dir, gr_error_t *err);

#endif

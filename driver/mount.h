#ifndef GR_MOUNT_H
#define GR_MOUNT_H
#endif

// Host calls the device back-ends need that Swift's Glibc module does not
// export (they need _GNU_SOURCE): fallocate(2) with its Linux mode flags, and
// getrandom(2). Used by Devices/Virtio (DiskImage, VirtioEntropy).
#ifndef CDEVICEIO_H
#define CDEVICEIO_H

#include <stddef.h>
#include <sys/types.h>

enum {
  CDEVICEIO_KEEP_SIZE = 0x01,   // FALLOC_FL_KEEP_SIZE
  CDEVICEIO_PUNCH_HOLE = 0x02,  // FALLOC_FL_PUNCH_HOLE
  CDEVICEIO_ZERO_RANGE = 0x10,  // FALLOC_FL_ZERO_RANGE
};

/// fallocate(fd, mode, offset, length): 0, or -1 with errno set.
int cdeviceio_fallocate(int fd, int mode, off_t offset, off_t length);

/// getrandom(buffer, length, 0): bytes filled, or -1 with errno set.
ssize_t cdeviceio_getrandom(void *buffer, size_t length);

#endif

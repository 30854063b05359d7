#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/random.h>

#include "CDeviceIO.h"

int cdeviceio_fallocate(int fd, int mode, off_t offset, off_t length) {
  return fallocate(fd, mode, offset, length);
}

ssize_t cdeviceio_getrandom(void *buffer, size_t length) {
  return getrandom(buffer, length, 0);
}

#ifndef CHOSTIO_H
#define CHOSTIO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

// Thin wrappers over epoll, timerfd, eventfd and ppoll, which Swift's Glibc
// module does not export. Each returns -1 with errno set on failure.

int chostio_epoll_create(void);
// Watches `fd` for readability; `token` comes back from chostio_epoll_wait.
int chostio_epoll_add(int epfd, int fd, uint64_t token);
int chostio_epoll_remove(int epfd, int fd);
// Waits up to `timeout_ms` (-1: forever) and fills up to `max` tokens.
// Returns how many are ready; 0 on timeout or EINTR.
int chostio_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms);

// A non-blocking CLOCK_MONOTONIC timerfd.
int chostio_timerfd_create(void);
// Arms it to fire once at absolute CLOCK_MONOTONIC `ns`; 0 disarms it.
int chostio_timerfd_arm(int fd, uint64_t ns);

// A non-blocking eventfd counter.
int chostio_eventfd_create(void);
// Adds 1 to an eventfd.
int chostio_eventfd_signal(int fd);
// Reads (and so clears) an eventfd or timerfd; returns its count, 0 if none.
uint64_t chostio_drain(int fd);

// Sleeps until `fd` is readable or `timeout_ns` passes (negative: forever).
// Returns 1 when readable, 0 on timeout or EINTR, -1 on error.
int chostio_wait_readable(int fd, int64_t timeout_ns);

// fallocate(2) with its Linux mode flags and getrandom(2), for the device
// back-ends (Devices/Virtio: DiskImage, VirtioEntropy); they need _GNU_SOURCE.
enum {
  CHOSTIO_KEEP_SIZE = 0x01,   // FALLOC_FL_KEEP_SIZE
  CHOSTIO_PUNCH_HOLE = 0x02,  // FALLOC_FL_PUNCH_HOLE
  CHOSTIO_ZERO_RANGE = 0x10,  // FALLOC_FL_ZERO_RANGE
};

// fallocate(fd, mode, offset, length): 0, or -1 with errno set.
int chostio_fallocate(int fd, int mode, off_t offset, off_t length);

// getrandom(buffer, length, 0): bytes filled, or -1 with errno set.
ssize_t chostio_getrandom(void *buffer, size_t length);

#endif

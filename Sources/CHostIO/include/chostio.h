#ifndef CHOSTIO_H
#define CHOSTIO_H

#include <stdint.h>

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

#endif

#define _GNU_SOURCE
#include "chostio.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

int chostio_epoll_create(void) { return epoll_create1(EPOLL_CLOEXEC); }

int chostio_epoll_add(int epfd, int fd, uint64_t token) {
  struct epoll_event ev = {.events = EPOLLIN, .data.u64 = token};
  return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
}

int chostio_epoll_remove(int epfd, int fd) { return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL); }

int chostio_epoll_wait(int epfd, uint64_t *tokens, int max, int timeout_ms) {
  struct epoll_event evs[16];
  if (max > 16) max = 16;
  int n = epoll_wait(epfd, evs, max, timeout_ms);
  if (n < 0) return errno == EINTR ? 0 : -1;
  for (int i = 0; i < n; i++) tokens[i] = evs[i].data.u64;
  return n;
}

int chostio_timerfd_create(void) {
  return timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
}

int chostio_timerfd_arm(int fd, uint64_t ns) {
  struct itimerspec its = {0};
  its.it_value.tv_sec = (time_t)(ns / 1000000000u);
  its.it_value.tv_nsec = (long)(ns % 1000000000u);
  return timerfd_settime(fd, TFD_TIMER_ABSTIME, &its, NULL);
}

int chostio_eventfd_create(void) { return eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK); }

int chostio_eventfd_signal(int fd) {
  uint64_t one = 1;
  ssize_t n;
  do {
    n = write(fd, &one, sizeof one);
  } while (n < 0 && errno == EINTR);
  // EAGAIN: the counter is saturated, so the reader will wake anyway.
  return n == sizeof one || errno == EAGAIN ? 0 : -1;
}

uint64_t chostio_drain(int fd) {
  uint64_t v = 0;
  ssize_t n;
  do {
    n = read(fd, &v, sizeof v);
  } while (n < 0 && errno == EINTR);
  return n == sizeof v ? v : 0;
}

int chostio_wait_readable(int fd, int64_t timeout_ns) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  struct timespec ts, *tsp = NULL;
  if (timeout_ns >= 0) {
    ts.tv_sec = (time_t)(timeout_ns / 1000000000);
    ts.tv_nsec = (long)(timeout_ns % 1000000000);
    tsp = &ts;
  }
  int n = ppoll(&p, 1, tsp, NULL);
  if (n < 0) return errno == EINTR ? 0 : -1;
  return n > 0 ? 1 : 0;
}

int chostio_fallocate(int fd, int mode, off_t offset, off_t length) {
  return fallocate(fd, mode, offset, length);
}

ssize_t chostio_getrandom(void *buffer, size_t length) { return getrandom(buffer, length, 0); }

#if !__has_include(<slirp/libslirp.h>)
#error "libslirp-dev is not installed: user-mode networking needs it (apt-get install libslirp-dev)"
#endif
#define _GNU_SOURCE
#include "cnetwork.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <slirp/libslirp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

enum { QUEUE_FRAMES = 256, MAX_FRAME = 65536 + 64, MAX_TIMERS = 16, MAX_POLL = 1024 };

struct frame { size_t length; uint8_t *bytes; };
struct timer { int used; SlirpTimerId id; void *cb_opaque; int64_t expire_ms; };

struct cusernet {
  Slirp *slirp;
  cusernet_rx_fn rx;
  void *opaque;
  pthread_t thread;
  int wake_fd;
  int stopping;
  pthread_mutex_t lock;  // guards the tx queue and slirp itself
  struct frame queue[QUEUE_FRAMES];
  int head, count;
  struct timer timers[MAX_TIMERS];
  struct pollfd fds[MAX_POLL];
  int nfds;
};

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static ssize_t send_packet(const void *buf, size_t len, void *opaque) {
  cusernet *n = opaque;
  n->rx(n->opaque, buf, len);
  return (ssize_t)len;
}
static void guest_error(const char *msg, void *opaque) { (void)msg; (void)opaque; }
static int64_t clock_get_ns(void *opaque) { (void)opaque; return now_ns(); }
static void *timer_new_opaque(SlirpTimerId id, void *cb_opaque, void *opaque) {
  cusernet *n = opaque;
  for (int i = 0; i < MAX_TIMERS; i++) {
    if (!n->timers[i].used) {
      n->timers[i] = (struct timer){1, id, cb_opaque, -1};
      return &n->timers[i];
    }
  }
  return NULL;
}
static void timer_free(void *t, void *opaque) { (void)opaque; if (t) ((struct timer *)t)->used = 0; }
static void timer_mod(void *t, int64_t expire_ms, void *opaque) {
  (void)opaque;
  if (t) ((struct timer *)t)->expire_ms = expire_ms;
}
static void register_poll_fd(int fd, void *opaque) { (void)fd; (void)opaque; }
static void unregister_poll_fd(int fd, void *opaque) { (void)fd; (void)opaque; }
static void notify(void *opaque) {
  cusernet *n = opaque;
  uint64_t one = 1;
  (void)!write(n->wake_fd, &one, sizeof one);
}

static int add_poll(int fd, int events, void *opaque) {
  cusernet *n = opaque;
  if (n->nfds >= MAX_POLL) return -1;
  short ev = 0;
  if (events & SLIRP_POLL_IN) ev |= POLLIN;
  if (events & SLIRP_POLL_OUT) ev |= POLLOUT;
  if (events & SLIRP_POLL_PRI) ev |= POLLPRI;
  n->fds[n->nfds] = (struct pollfd){fd, ev, 0};
  return n->nfds++;
}
static int get_revents(int idx, void *opaque) {
  cusernet *n = opaque;
  if (idx < 0 || idx >= n->nfds) return 0;
  short r = n->fds[idx].revents;
  int out = 0;
  if (r & POLLIN) out |= SLIRP_POLL_IN;
  if (r & POLLOUT) out |= SLIRP_POLL_OUT;
  if (r & POLLPRI) out |= SLIRP_POLL_PRI;
  if (r & POLLERR) out |= SLIRP_POLL_ERR;
  if (r & POLLHUP) out |= SLIRP_POLL_HUP;
  return out;
}

static void *run(void *arg) {
  cusernet *n = arg;
  for (;;) {
    pthread_mutex_lock(&n->lock);
    if (n->stopping) { pthread_mutex_unlock(&n->lock); break; }
    while (n->count > 0) {
      struct frame f = n->queue[n->head];
      n->head = (n->head + 1) % QUEUE_FRAMES;
      n->count--;
      slirp_input(n->slirp, f.bytes, (int)f.length);
      free(f.bytes);
    }
    uint32_t timeout = 1000;
    int64_t now_ms = now_ns() / 1000000;
    for (int i = 0; i < MAX_TIMERS; i++) {
      struct timer *t = &n->timers[i];
      if (t->used && t->expire_ms >= 0) {
        if (t->expire_ms <= now_ms) {
          t->expire_ms = -1;
          slirp_handle_timer(n->slirp, t->id, t->cb_opaque);
        } else if ((uint64_t)(t->expire_ms - now_ms) < timeout) {
          timeout = (uint32_t)(t->expire_ms - now_ms);
        }
      }
    }
    n->nfds = 0;
    add_poll(n->wake_fd, SLIRP_POLL_IN, n);
    slirp_pollfds_fill(n->slirp, &timeout, add_poll, n);
    int nfds = n->nfds;
    pthread_mutex_unlock(&n->lock);

    int r = poll(n->fds, (nfds_t)nfds, (int)timeout);

    pthread_mutex_lock(&n->lock);
    if (n->fds[0].revents & POLLIN) {
      uint64_t v;
      (void)!read(n->wake_fd, &v, sizeof v);
    }
    if (!n->stopping) slirp_pollfds_poll(n->slirp, r < 0, get_revents, n);
    pthread_mutex_unlock(&n->lock);
  }
  return NULL;
}

cusernet *cusernet_new(cusernet_rx_fn rx, void *opaque, char *error, size_t error_size) {
  cusernet *n = calloc(1, sizeof *n);
  if (!n) { snprintf(error, error_size, "out of memory"); return NULL; }
  n->rx = rx;
  n->opaque = opaque;
  pthread_mutex_init(&n->lock, NULL);
  n->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (n->wake_fd < 0) {
    snprintf(error, error_size, "eventfd: %s", strerror(errno));
    free(n);
    return NULL;
  }
  SlirpConfig cfg = {0};
  cfg.version = 4;
  cfg.in_enabled = true;
  inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
  inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
  inet_pton(AF_INET, "10.0.2.2", &cfg.vhost);
  inet_pton(AF_INET, "10.0.2.15", &cfg.vdhcp_start);
  inet_pton(AF_INET, "10.0.2.3", &cfg.vnameserver);
  cfg.vhostname = "swiftvmm";
  static const SlirpCb callbacks = {
      .send_packet = send_packet,
      .guest_error = guest_error,
      .clock_get_ns = clock_get_ns,
      .timer_free = timer_free,
      .timer_mod = timer_mod,
      .register_poll_fd = register_poll_fd,
      .unregister_poll_fd = unregister_poll_fd,
      .notify = notify,
      .timer_new_opaque = timer_new_opaque,
  };
  n->slirp = slirp_new(&cfg, &callbacks, n);
  if (!n->slirp) {
    snprintf(error, error_size, "slirp_new failed");
    close(n->wake_fd);
    free(n);
    return NULL;
  }
  if (pthread_create(&n->thread, NULL, run, n) != 0) {
    snprintf(error, error_size, "cannot start the network thread");
    slirp_cleanup(n->slirp);
    close(n->wake_fd);
    free(n);
    return NULL;
  }
  return n;
}

int cusernet_add_hostfwd(cusernet *n, int udp, const char *host_addr, int host_port,
                         int guest_port) {
  struct in_addr host, guest;
  if (inet_pton(AF_INET, host_addr, &host) != 1) return -1;
  inet_pton(AF_INET, "10.0.2.15", &guest);
  pthread_mutex_lock(&n->lock);
  int r = slirp_add_hostfwd(n->slirp, udp, host, host_port, guest, guest_port);
  pthread_mutex_unlock(&n->lock);
  notify(n);
  return r < 0 ? -1 : 0;
}

int cusernet_send(cusernet *n, const uint8_t *frame, size_t length) {
  if (length == 0 || length > MAX_FRAME) return -1;
  uint8_t *copy = malloc(length);
  if (!copy) return -1;
  memcpy(copy, frame, length);
  pthread_mutex_lock(&n->lock);
  if (n->count == QUEUE_FRAMES) {
    pthread_mutex_unlock(&n->lock);
    free(copy);
    return -1;
  }
  n->queue[(n->head + n->count) % QUEUE_FRAMES] = (struct frame){length, copy};
  n->count++;
  pthread_mutex_unlock(&n->lock);
  notify(n);
  return 0;
}

void cusernet_free(cusernet *n) {
  if (!n) return;
  pthread_mutex_lock(&n->lock);
  n->stopping = 1;
  pthread_mutex_unlock(&n->lock);
  notify(n);
  pthread_join(n->thread, NULL);
  slirp_cleanup(n->slirp);
  while (n->count > 0) {
    free(n->queue[n->head].bytes);
    n->head = (n->head + 1) % QUEUE_FRAMES;
    n->count--;
  }
  close(n->wake_fd);
  pthread_mutex_destroy(&n->lock);
  free(n);
}

const char *cusernet_version(void) { return slirp_version_string(); }

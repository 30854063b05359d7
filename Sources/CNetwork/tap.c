#define _GNU_SOURCE
#include "cnetwork.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int cnetwork_tap_open(const char *name, char *error, size_t error_size) {
  if (strlen(name) >= IFNAMSIZ) {
    snprintf(error, error_size, "TAP name '%s' is longer than %d characters", name, IFNAMSIZ - 1);
    return -1;
  }
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    snprintf(error, error_size, "cannot open /dev/net/tun: %s", strerror(errno));
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TAP | IFF_NO_PI;
  strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    snprintf(error, error_size, "cannot attach TAP '%s': %s", name, strerror(errno));
    close(fd);
    return -1;
  }
  return fd;
}

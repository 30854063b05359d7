#ifndef CNETWORK_H
#define CNETWORK_H
// User-mode networking for SwiftVMM: libslirp (the library QEMU's -nic user uses),
// driven by a thread of our own. Frames the guest sends go in with cusernet_send
// (any thread); frames for the guest come out through the rx callback, on the
// network thread, which must not call back into cusernet from it.
// Also: TAP devices for --net tap.
#include <stddef.h>
#include <stdint.h>

typedef struct cusernet cusernet;
typedef void (*cusernet_rx_fn)(void *opaque, const uint8_t *frame, size_t length);

// Creates the network 10.0.2.0/24 (gateway/host 10.0.2.2, DNS 10.0.2.3, DHCP from
// 10.0.2.15) and starts its thread. Returns NULL and fills `error` on failure.
cusernet *cusernet_new(cusernet_rx_fn rx, void *opaque, char *error, size_t error_size);
// Forwards host_addr:host_port (TCP, or UDP if udp) to the guest's 10.0.2.15:guest_port.
// Returns 0, or -1 if the host port cannot be bound. Call before traffic starts.
int cusernet_add_hostfwd(cusernet *n, int udp, const char *host_addr, int host_port,
                         int guest_port);
// Queues one Ethernet frame from the guest. Returns 0, or -1 if the queue is full
// (the frame is dropped, as a congested link would).
int cusernet_send(cusernet *n, const uint8_t *frame, size_t length);
// Stops the thread and frees everything.
void cusernet_free(cusernet *n);
const char *cusernet_version(void);

// Opens (creating if needed) the TAP interface `name` (IFF_TAP | IFF_NO_PI), non-blocking.
// Returns the file descriptor, or -1 with `error` filled.
int cnetwork_tap_open(const char *name, char *error, size_t error_size);
#endif

#ifndef CHOSTIO_CRC32C_H
#define CHOSTIO_CRC32C_H

#include <stddef.h>
#include <stdint.h>

// CRC-32C (Castagnoli, as iSCSI and ext4 use it) of `length` bytes, continuing
// from `crc` (0 to start). SSE4.2's CRC32 instruction when the host has it.
uint32_t chostio_crc32c(uint32_t crc, const void *data, size_t length);

#endif

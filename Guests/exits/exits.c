/* exits: measures port-I/O and MMIO round trips (each one causes VM exits). */
#include "runtime.h"

#define PIO_PORT 0x80

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t n = cmdline_uint("count", 100000);
    uint64_t div = n ? n : 1;

    uint64_t t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++) {
        outl(PIO_PORT, (uint32_t)i);
        (void)inl(PIO_PORT);
    }
    uint64_t t1 = rdtsc();
    printf("pio: %lu round trips, %lu tsc/roundtrip\n", n, (t1 - t0) / div);

    t0 = rdtsc();
    for (uint64_t i = 0; i < n; i++) {
        mmio_write32(MMIO_TEST_ADDR, (uint32_t)i);
        (void)mmio_read32(MMIO_TEST_ADDR);
    }
    t1 = rdtsc();
    printf("mmio: %lu round trips, %lu tsc/roundtrip\n", n, (t1 - t0) / div);

    puts("exits: done\n");
    return 0;
}

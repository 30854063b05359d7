/* bench_crc32: table-driven CRC-32 (IEEE, reflected) over a 16 MiB buffer,
 * repeated. */
#include "runtime.h"

#define BUF_SIZE (16u << 20)
#define REPEAT 20

static uint32_t table[256];
static uint8_t *buf = (uint8_t *)HEAP_BASE;

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t repeat = bench_work(cmdline_uint("repeat", REPEAT));

    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        table[i] = c;
    }
    /* sanity: CRC-32 of "123456789" is 0xCBF43926 */
    uint32_t chk = 0xFFFFFFFFu;
    for (const char *p = "123456789"; *p; p++)
        chk = table[(chk ^ (uint8_t)*p) & 0xff] ^ (chk >> 8);
    if ((chk ^ 0xFFFFFFFFu) != 0xCBF43926u) {
        printf("FAIL bench crc32: check value %08x\n", chk ^ 0xFFFFFFFFu);
        return 1;
    }

    uint32_t x = 1;
    for (uint32_t i = 0; i < BUF_SIZE; i += 4) {
        x = x * 1664525u + 1013904223u;
        memcpy(buf + i, &x, 4);
    }
    uint32_t crc = 0xFFFFFFFFu;
    for (uint64_t r = 0; r < repeat; r++)
        for (uint32_t i = 0; i < BUF_SIZE; i++)
            crc = table[(crc ^ buf[i]) & 0xff] ^ (crc >> 8);
    printf("bench crc32: result=%08x\n", crc ^ 0xFFFFFFFFu);
    return 0;
}

/*
 * echo: a console test guest. Reports each control key it receives as
 * "key XX", and on '!' prints how many bytes came since the last report and
 * their FNV-1a checksum ("count=N fnv=XXXXXXXX"), so a test can type or paste
 * into the console and check that every byte arrived, in order. '~' ends the
 * guest (exit 0). Polls the UART.
 */
#include "runtime.h"

static uint8_t getc_polled(void)
{
    while (!(inb(SERIAL_PORT + 5) & 0x01))
        ;
    return inb(SERIAL_PORT);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("echo ready\n");
    uint32_t count = 0, fnv = 2166136261u;
    for (;;) {
        uint8_t c = getc_polled();
        if (c == '~')
            return 0;
        if (c == '!') {
            printf("count=%u fnv=%08x\n", count, fnv);
            count = 0;
            fnv = 2166136261u;
            continue;
        }
        count++;
        fnv = (fnv ^ c) * 16777619u;
        if (c < 0x20 || c == 0x7F)
            printf("key %02x\n", c);
    }
}

/* gdbtarget: a small program for the gdb stub test (Tests/VMMTests/GDBTests.swift):
 * a function to break at, a global to read and one to watch. Exits with code 0. */
#include "runtime.h"

volatile uint64_t gdb_counter;
volatile uint64_t gdb_watched;

__attribute__((noinline)) uint64_t gdb_bump(uint64_t by)
{
    gdb_counter += by;
    return gdb_counter;
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t total = 0;
    for (uint64_t i = 1; i <= 5; i++)
        total += gdb_bump(i);
    gdb_watched = total;
    printf("gdbtarget: total=%u counter=%u\n", (unsigned)total, (unsigned)gdb_counter);
    return 0;
}

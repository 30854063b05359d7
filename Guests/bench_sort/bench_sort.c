/* bench_sort: quicksort of N pseudo-random u32 (LCG), checks sortedness. */
#include "runtime.h"

#define N (1u << 20)
#define ROUNDS 10

static uint32_t *arr = (uint32_t *)HEAP_BASE;

static void insertion(uint32_t *a, long lo, long hi)
{
    for (long i = lo + 1; i <= hi; i++) {
        uint32_t v = a[i];
        long j = i - 1;
        while (j >= lo && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

static void quicksort(uint32_t *a, long lo, long hi)
{
    while (hi - lo > 16) {
        long mid = lo + (hi - lo) / 2;
        /* median of three */
        if (a[mid] < a[lo]) { uint32_t t = a[mid]; a[mid] = a[lo]; a[lo] = t; }
        if (a[hi] < a[lo]) { uint32_t t = a[hi]; a[hi] = a[lo]; a[lo] = t; }
        if (a[hi] < a[mid]) { uint32_t t = a[hi]; a[hi] = a[mid]; a[mid] = t; }
        uint32_t pivot = a[mid];
        long i = lo, j = hi;
        while (i <= j) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i <= j) {
                uint32_t t = a[i]; a[i] = a[j]; a[j] = t;
                i++;
                j--;
            }
        }
        /* recurse into the smaller half, loop on the larger */
        if (j - lo < hi - i) {
            quicksort(a, lo, j);
            lo = i;
        } else {
            quicksort(a, i, hi);
            hi = j;
        }
    }
    insertion(a, lo, hi);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    uint64_t rounds = bench_work(cmdline_uint("rounds", ROUNDS));
    uint32_t n = (uint32_t)cmdline_uint("n", N);
    uint64_t result = 0;
    for (uint64_t round = 0; round < rounds; round++) {
        uint32_t x = 12345u + (uint32_t)round * 7919u;
        for (uint32_t i = 0; i < n; i++) {
            x = x * 1664525u + 1013904223u;
            arr[i] = x ^ (x >> 16);
        }
        quicksort(arr, 0, (long)n - 1);
        for (uint32_t i = 1; i < n; i++) {
            if (arr[i - 1] > arr[i]) {
                printf("FAIL bench sort: not sorted at %u\n", i);
                return 1;
            }
        }
        uint64_t h = 0xcbf29ce484222325ull;
        for (uint32_t i = 0; i < n; i += 1024)
            h = (h ^ arr[i]) * 0x100000001b3ull;
        result ^= h + round;
    }
    printf("bench sort: result=%016lx\n", result);
    return 0;
}

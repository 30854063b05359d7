/*
 * virtio: a minimal modern virtio-pci driver (virtio 1.2 §4.1), polled.
 *
 * Enumerates PCI bus 0 through 0xCF8/0xCFC, finds virtio-blk (1AF4:1042) and
 * virtio-rng (1AF4:1044), reads their vendor capabilities, negotiates
 * VERSION_1 only, sets up queue 0 and:
 *   blk: capacity, GET_ID, writes a pattern to sector 1, reads it back,
 *        reads past the end of the disk (must fail with IOERR);
 *   rng: asks for 64 bytes and checks they are not all zero.
 * A device without VERSION_1 accepted, or a missing device, is a FAIL.
 * Prints "PASS virtio" and exits 0 when every check held.
 *
 * The BAR is used where the firmware (SwiftVMM's device manager, SeaBIOS
 * under QEMU) placed it; the low 4 GiB are identity mapped.
 */
#include "runtime.h"

static int failures;
#define CHECK(cond, ...) do { if (!(cond)) { printf("FAIL "); printf(__VA_ARGS__); putc('\n'); failures++; } } while (0)

static uint32_t pci_read32(int dev, int off)
{
    outl(0xCF8, 0x80000000u | (uint32_t)dev << 11 | (uint32_t)(off & 0xFC));
    return inl(0xCFC);
}

static void pci_write32(int dev, int off, uint32_t v)
{
    outl(0xCF8, 0x80000000u | (uint32_t)dev << 11 | (uint32_t)(off & 0xFC));
    outl(0xCFC, v);
}

static uint8_t pci_read8(int dev, int off) { return (uint8_t)(pci_read32(dev, off) >> (8 * (off & 3))); }

static inline void fence(void) { __asm__ volatile("mfence" ::: "memory"); }

#define R8(a) (*(volatile uint8_t *)(uintptr_t)(a))
#define R16(a) (*(volatile uint16_t *)(uintptr_t)(a))
#define R32(a) (*(volatile uint32_t *)(uintptr_t)(a))
#define R64(a) (*(volatile uint64_t *)(uintptr_t)(a))

/* Common configuration offsets. */
enum {
    DFSEL = 0x00, DF = 0x04, GFSEL = 0x08, GF = 0x0C, MSIXCFG = 0x10, NUMQ = 0x12, STATUS = 0x14,
    QSEL = 0x16, QSIZE = 0x18, QMSIX = 0x1A, QENABLE = 0x1C, QNOFF = 0x1E, QDESC = 0x20,
    QDRIVER = 0x28, QDEVICE = 0x30,
};

struct vdev {
    int pci;
    uintptr_t common, notify, isr, devcfg;
    uint32_t notify_mult;
    uint16_t qsize;
    uintptr_t desc, avail, used;
    uint16_t avail_idx, used_seen;
};

struct desc { uint64_t addr; uint32_t len; uint16_t flags; uint16_t next; };

static uint64_t bar_address(int dev, int bar)
{
    uint32_t lo = pci_read32(dev, 0x10 + 4 * bar);
    uint64_t a = lo & ~0xFu;
    if ((lo & 6) == 4) a |= (uint64_t)pci_read32(dev, 0x14 + 4 * bar) << 32;
    return a;
}

static int find_device(uint16_t device_id)
{
    for (int d = 0; d < 32; d++) {
        uint32_t id = pci_read32(d, 0);
        if ((id & 0xFFFF) == 0x1AF4 && (id >> 16) == device_id) return d;
    }
    return -1;
}

/* Reads the capability list; returns 0 when common, notify and ISR were found. */
static int map_caps(struct vdev *v)
{
    v->common = v->notify = v->isr = v->devcfg = 0;
    if (!(pci_read32(v->pci, 0x04) & (1u << 20))) return -1; /* status: capability list */
    int at = pci_read8(v->pci, 0x34) & 0xFC;
    for (int n = 0; at && n < 48; n++) {
        if (pci_read8(v->pci, at) == 0x09) {
            int type = pci_read8(v->pci, at + 3), bar = pci_read8(v->pci, at + 4);
            uintptr_t a = (uintptr_t)(bar_address(v->pci, bar) + pci_read32(v->pci, at + 8));
            if (type == 1) v->common = a;
            if (type == 2) { v->notify = a; v->notify_mult = pci_read32(v->pci, at + 16); }
            if (type == 3) v->isr = a;
            if (type == 4) v->devcfg = a;
        }
        at = pci_read8(v->pci, at + 1) & 0xFC;
    }
    return v->common && v->notify && v->isr ? 0 : -1;
}

/* Reset, negotiate VERSION_1 only, set up queue 0 in `mem`, DRIVER_OK. */
static int setup(struct vdev *v, uintptr_t mem)
{
    /* Memory space and bus mastering on. */
    pci_write32(v->pci, 0x04, pci_read32(v->pci, 0x04) | 6);
    if (map_caps(v)) return -1;
    uintptr_t c = v->common;
    R8(c + STATUS) = 0;
    while (R8(c + STATUS) != 0) {}
    R8(c + STATUS) = 1;       /* ACKNOWLEDGE */
    R8(c + STATUS) = 1 | 2;   /* DRIVER */
    R32(c + DFSEL) = 1;
    uint32_t hi = R32(c + DF);
    if (!(hi & 1)) { printf("device lacks VERSION_1\n"); return -1; }
    R32(c + GFSEL) = 0; R32(c + GF) = 0;
    R32(c + GFSEL) = 1; R32(c + GF) = 1;     /* VERSION_1 */
    R8(c + STATUS) = 1 | 2 | 8;              /* FEATURES_OK */
    if (!(R8(c + STATUS) & 8)) { printf("FEATURES_OK refused\n"); return -1; }
    R16(c + QSEL) = 0;
    uint16_t max = R16(c + QSIZE);
    if (max == 0) return -1;
    v->qsize = max < 8 ? max : 8;
    R16(c + QSIZE) = v->qsize;
    R16(c + QMSIX) = 0xFFFF;
    v->desc = mem; v->avail = mem + 0x1000; v->used = mem + 0x2000;
    memset((void *)mem, 0, 0x3000);
    R64(c + QDESC) = v->desc;
    R32(c + QDRIVER) = (uint32_t)v->avail; R32(c + QDRIVER + 4) = (uint32_t)(v->avail >> 32);
    R64(c + QDEVICE) = v->used;
    R16(c + QENABLE) = 1;
    v->avail_idx = v->used_seen = 0;
    R8(c + STATUS) = 1 | 2 | 8 | 4;          /* DRIVER_OK */
    return (R8(c + STATUS) & 0x40) ? -1 : 0;
}

/* Offers descriptors 0..n-1 as one chain and waits for the device; returns the used length. */
static int32_t submit(struct vdev *v, const struct desc *chain, int n)
{
    struct desc *d = (struct desc *)v->desc;
    for (int i = 0; i < n; i++) {
        d[i] = chain[i];
        if (i + 1 < n) { d[i].flags |= 1; d[i].next = (uint16_t)(i + 1); }
    }
    R16(v->avail + 4 + 2 * (v->avail_idx % v->qsize)) = 0;
    fence();
    R16(v->avail + 2) = ++v->avail_idx;
    fence();
    uint16_t qnoff = (R16(v->common + QSEL) = 0, R16(v->common + QNOFF));
    R16(v->notify + (uintptr_t)qnoff * v->notify_mult) = 0;
    for (uint32_t spins = 0; R16(v->used + 2) == v->used_seen; spins++) {
        if (spins > 10000000u) { printf("device did not answer\n"); return -1; }
        if (R8(v->common + STATUS) & 0x40) { printf("device needs reset\n"); return -1; }
    }
    fence();
    uint32_t len = R32(v->used + 4 + 8 * (v->used_seen % v->qsize) + 4);
    v->used_seen++;
    (void)R8(v->isr); /* acknowledge the interrupt (INTx) */
    return (int32_t)len;
}

struct blk_req { uint32_t type, reserved; uint64_t sector; };

static uint8_t blk_io(struct vdev *v, uint32_t type, uint64_t sector, void *data, uint32_t len,
                      int32_t *used)
{
    static struct blk_req hdr ALIGNED(16);
    static volatile uint8_t status;
    hdr.type = type; hdr.reserved = 0; hdr.sector = sector;
    status = 0xEE;
    struct desc chain[3];
    int n = 0;
    chain[n++] = (struct desc){ (uintptr_t)&hdr, 16, 0, 0 };
    if (len) chain[n++] = (struct desc){ (uintptr_t)data, len, (uint16_t)(type == 1 ? 0 : 2), 0 };
    chain[n++] = (struct desc){ (uintptr_t)&status, 1, 2, 0 };
    *used = submit(v, chain, n);
    return status;
}

static void test_blk(void)
{
    struct vdev v = { .pci = find_device(0x1042) };
    if (v.pci < 0) { printf("FAIL no virtio-blk device\n"); failures++; return; }
    if (setup(&v, HEAP_BASE)) { printf("FAIL virtio-blk setup\n"); failures++; return; }
    uint64_t capacity = R64(v.devcfg);
    printf("virtio-blk: 00:%02x.0 capacity=%u sectors\n", v.pci, (unsigned)capacity);
    uint8_t *buf = (uint8_t *)(HEAP_BASE + 0x10000);
    int32_t used;

    uint8_t s = blk_io(&v, 8, 0, buf, 20, &used); /* GET_ID */
    buf[20] = 0;
    CHECK(s == 0, "get-id status %u", s);
    printf("virtio-blk: id=\"%s\"\n", (char *)buf);

    for (int i = 0; i < 512; i++) buf[i] = (uint8_t)(i * 7 + 3);
    s = blk_io(&v, 1, 1, buf, 512, &used);
    CHECK(s == 0 && used == 1, "write status %u used %d", s, (int)used);
    s = blk_io(&v, 4, 0, 0, 0, &used);
    CHECK(s == 0, "flush status %u", s);
    memset(buf, 0, 512);
    s = blk_io(&v, 0, 1, buf, 512, &used);
    CHECK(s == 0 && used == 513, "read status %u used %d", s, (int)used);
    int same = 1;
    for (int i = 0; i < 512; i++) same &= buf[i] == (uint8_t)(i * 7 + 3);
    CHECK(same, "read back differs from what was written");
    s = blk_io(&v, 0, capacity, buf, 512, &used);
    CHECK(s == 1, "read past the end: status %u, expected IOERR", s);
    printf("virtio-blk: write, flush, read back, past-the-end IOERR done\n");
}

static void test_rng(void)
{
    struct vdev v = { .pci = find_device(0x1044) };
    if (v.pci < 0) { printf("FAIL no virtio-rng device\n"); failures++; return; }
    if (setup(&v, HEAP_BASE + 0x100000)) { printf("FAIL virtio-rng setup\n"); failures++; return; }
    uint8_t *buf = (uint8_t *)(HEAP_BASE + 0x110000);
    memset(buf, 0, 64);
    struct desc d = { (uintptr_t)buf, 64, 2, 0 };
    int32_t used = submit(&v, &d, 1);
    int nonzero = 0;
    for (int i = 0; i < 64; i++) nonzero += buf[i] != 0;
    CHECK(used == 64 && nonzero > 32, "rng: used %d, %d non-zero bytes", (int)used, nonzero);
    printf("virtio-rng: 00:%02x.0 gave %d bytes\n", v.pci, (int)used);
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic; (void)mbi;
    test_blk();
    test_rng();
    if (failures) return 1;
    puts("PASS virtio\n");
    return 0;
}

/* pv_mmu: an in-guest model of the SwiftVMM PV MMU hypercalls, for
 * developing the test kernel under QEMU (command line token pvmock=1).
 * VMCALL/VMMCALL raise #UD there; the trap hook below emulates them by the
 * rules of docs/HYPERCALLS.md, so it doubles as an executable reference of
 * those rules (validation, reference counts, bootstrap write protection).
 * It is not a VMM: it runs in the guest, trusts the guest, and only tracks
 * the first MOCK_FRAMES frames. Two behaviours need a real VMM and are
 * approximated: bootstrap write protection is done by making the boot
 * table's 2 MiB page around a pinned page read-only, and MOV CR3 in strict
 * mode is not intercepted (the guest skips that check under the mock). */
#include "pt.h"
#include "hypercall.h"

#define MOCK_FRAMES 16384u                  /* 64 MiB */

bool pvmock_active;
bool pvmock_install(void);

static uint8_t  m_level[MOCK_FRAMES];       /* 0 = not pinned, else 1..4 */
static uint16_t m_refs[MOCK_FRAMES];        /* present non-leaf entries pointing here (+1 base) */
static uint32_t m_wmaps[MOCK_FRAMES];       /* writable leaves of pinned tables mapping the frame */
static bool m_hello, m_strict;
static uint64_t m_base, m_ram_end, m_addr_mask;
static bool m_1g;

static bool in_ram(uint64_t pa, uint64_t len) { return pa < m_ram_end && len <= m_ram_end - pa && pa + len <= (uint64_t)MOCK_FRAMES * 4096; }
static uint64_t fn(uint64_t pa) { return pa >> 12; }

/* The mock writes tables the guest maps read-only: clear CR0.WP around it. */
static void poke(uint64_t pa, uint64_t v)
{
    uint64_t cr0 = read_cr0();
    write_cr0(cr0 & ~CR0_WP);
    *(volatile uint64_t *)(uintptr_t)pa = v;
    write_cr0(cr0);
}
static uint64_t peek(uint64_t pa) { return *(volatile uint64_t *)(uintptr_t)pa; }

static bool is_leaf(int level, uint64_t e) { return level == 1 || ((level == 2 || level == 3) && (e & PTE_PS)); }
static uint64_t leaf_size(int level) { return level == 1 ? 0x1000ul : level == 2 ? 0x200000ul : 0x40000000ul; }

/* §4: validate entry value e for a table of `level`; self = the page being
 * pinned (counts as pinned for rule 5) or ~0. Returns 0 or -errno. */
static int64_t validate(int level, uint64_t e, uint64_t self)
{
    if (!(e & PTE_P))
        return 0;
    uint64_t addr = e & PTE_ADDR;
    if (addr & ~m_addr_mask)
        return -HC_EINVAL;
    if (level == 4 && (e & PTE_PS))
        return -HC_EINVAL;
    if (level == 3 && (e & PTE_PS) && (!m_1g || (e & 0x3FFFE000ul)))
        return -HC_EINVAL;
    if (level == 2 && (e & PTE_PS) && (e & 0x1FE000ul))
        return -HC_EINVAL;
    if (!is_leaf(level, e)) {
        if (!in_ram(addr, 4096))
            return -HC_EFAULT;
        return m_level[fn(addr)] == level - 1 ? 0 : -HC_EPERM;
    }
    uint64_t size = leaf_size(level), base = addr & ~(size - 1);
    if (!in_ram(base, size))
        return -HC_EFAULT;
    if (e & PTE_W)
        for (uint64_t f = fn(base); f < fn(base + size); f++)
            if (m_level[f] || f == fn(self))
                return -HC_EPERM;
    return 0;
}

/* §5: reference accounting for a (valid) entry, d = +1 or -1 */
static void account(int level, uint64_t e, int d)
{
    if (!(e & PTE_P))
        return;
    uint64_t addr = e & PTE_ADDR;
    if (!is_leaf(level, e)) {
        m_refs[fn(addr)] += d;
        return;
    }
    if (e & PTE_W) {
        uint64_t size = leaf_size(level), base = addr & ~(size - 1);
        for (uint64_t f = fn(base); f < fn(base + size); f++)
            m_wmaps[f] += d;
    }
}

/* Bootstrap write protection (approximation, see the file comment). */
static void protect_boot_mapping(uint64_t pa)
{
    if (m_strict)
        return;
    int level = 0;
    uint64_t *e = paging_leaf(pa, &level);
    if (e && level == 2 && (*e & PTE_W)) {
        *e &= ~PTE_W;
        invlpg((void *)(uintptr_t)pa);
    }
}

static int64_t mmu_update(uint64_t arr, uint64_t count, uint64_t *rdx)
{
    *rdx = 0;
    if (count > HC_MMU_UPDATE_MAX || (arr & 7))
        return -HC_EINVAL;
    if (!in_ram(arr, count * 16))
        return -HC_EFAULT;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t ptr = peek(arr + 16 * i), val = peek(arr + 16 * i + 8);
        *rdx = i;
        if (ptr & 7)
            return -HC_EINVAL;
        if (!in_ram(ptr, 8))
            return -HC_EFAULT;
        int level = m_level[fn(ptr)];
        if (!level)
            return -HC_EPERM;
        int64_t r = validate(level, val, ~0ul);
        if (r)
            return r;
        uint64_t old = peek(ptr);
        account(level, val, +1);
        account(level, old, -1);
        poke(ptr, val);
    }
    return (int64_t)count;
}

static int64_t pin(uint64_t pa, uint64_t level, uint64_t *rdx)
{
    if ((pa & 0xFFF) || level < 1 || level > 4)
        return -HC_EINVAL;
    if (!in_ram(pa, 4096))
        return -HC_EFAULT;
    if (m_level[fn(pa)])
        return m_level[fn(pa)] == level ? 0 : -HC_EPERM;
    if (m_wmaps[fn(pa)]) {
        *rdx = 512;
        return -HC_EPERM;
    }
    for (unsigned i = 0; i < 512; i++) {
        int64_t r = validate((int)level, peek(pa + 8 * i), pa);
        if (r) {
            *rdx = i;
            return r;
        }
    }
    for (unsigned i = 0; i < 512; i++)
        account((int)level, peek(pa + 8 * i), +1);
    m_level[fn(pa)] = (uint8_t)level;
    protect_boot_mapping(pa);
    return 0;
}

static int64_t unpin(uint64_t pa)
{
    if ((pa & 0xFFF) || !in_ram(pa, 4096) || !m_level[fn(pa)])
        return -HC_EINVAL;
    if (m_refs[fn(pa)])
        return -HC_EPERM;
    int level = m_level[fn(pa)];
    for (unsigned i = 0; i < 512; i++)
        account(level, peek(pa + 8 * i), -1);
    m_level[fn(pa)] = 0;
    return 0;
}

static int64_t new_baseptr(uint64_t pa)
{
    if (pa & 0xFFF)
        return -HC_EINVAL;
    if (!in_ram(pa, 4096) || m_level[fn(pa)] != 4)
        return -HC_EPERM;
    if (m_strict)
        m_refs[fn(m_base)]--;
    m_refs[fn(pa)]++;
    m_base = pa;
    m_strict = true;
    write_cr3(pa);
    return 0;
}

static int64_t dispatch(struct trap_frame *f, uint64_t *rdx)
{
    uint64_t nr = f->rax, a0 = f->rbx, a1 = f->rcx;
    if (f->cs & 3)
        return -HC_EPERM;
    if (nr < HC_PV_HELLO || nr > HC_FLUSH_TLB)
        return -HC_ENOSYS;
    if (nr == HC_PV_HELLO) {
        if (a0 != HC_ABI_VERSION)
            return -HC_EINVAL;
        m_hello = true;
        return HC_ABI_VERSION;
    }
    if (!m_hello)
        return -HC_EPERM;
    switch (nr) {
    case HC_MMU_UPDATE: return mmu_update(a0, a1, rdx);
    case HC_PIN_TABLE: return pin(a0, a1, rdx);
    case HC_UNPIN_TABLE: return unpin(a0);
    case HC_NEW_BASEPTR: return new_baseptr(a0);
    case HC_INVLPG: invlpg((void *)(uintptr_t)a0); return 0;
    case HC_FLUSH_TLB:
        if (read_cr4() & CR4_PGE) {
            write_cr4(read_cr4() & ~CR4_PGE);
            write_cr4(read_cr4() | CR4_PGE);
        } else {
            write_cr3(read_cr3());
        }
        return 0;
    default: return -HC_ENOSYS;
    }
}

static bool mock_hook(struct trap_frame *f)
{
    if (f->vector != 6)
        return false;
    const volatile uint8_t *ip = (const volatile uint8_t *)(uintptr_t)f->rip;
    if (!(ip[0] == 0x0F && ip[1] == 0x01 && (ip[2] == 0xC1 || ip[2] == 0xD9)))
        return false;
    uint64_t rdx = f->rdx;
    f->rax = (uint64_t)dispatch(f, &rdx);
    f->rdx = rdx;
    f->rip += 3;
    /* a hypercall is not a trap for the test's bookkeeping */
    trap_count--;
    last_trap.vector = ~0ul;
    return true;
}

bool pvmock_install(void)
{
    uint64_t end = 0;
    for (uint32_t i = 0; i < mb_mmap_count(); i++) {
        const struct mb_mmap_entry *m = mb_mmap(i);
        if (m->type == 1 && m->addr <= 0x100000 && m->addr + m->len > end)
            end = m->addr + m->len;
    }
    if (!end && boot_info.have_mem)
        end = 0x100000ul + (uint64_t)boot_info.mem_upper * 1024;
    if (!end)
        return false;
    m_ram_end = end;
    uint32_t max = 0, eax = 0;
    cpuid(0x80000000, 0, &max, 0, 0, 0);
    unsigned bits = 36;
    if (max >= 0x80000008) {
        cpuid(0x80000008, 0, &eax, 0, 0, 0);
        bits = eax & 0xFF;
    }
    m_addr_mask = ((1ul << bits) - 1) & PTE_ADDR;
    m_1g = cpu_has_1g();
    trap_hook = mock_hook;
    pvmock_active = true;
    return true;
}

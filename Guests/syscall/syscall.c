/* syscall: SYSCALL/SYSRET round trips between ring 3 and ring 0 using
 * STAR/LSTAR/FMASK; checks RCX/R11 semantics, RFLAGS masking and selectors. */
#include "sys.h"

#define NCALLS 3
#define FMASK_BITS 0x40700ull   /* AC | DF | IF | TF */

struct sc_frame {
    uint64_t nr, a0, a1, rcx, r11, kflags, kcs, kss, user_rsp, rdx, r8, r9, r10, pad;
};

void syscall_entry(void);
void user_syscalls(void);
uint64_t sc_handler(struct sc_frame *f);

/* written by the ring-3 code */
volatile uint64_t sc_expect_rcx[NCALLS], sc_expect_r11[NCALLS], sc_expect_rsp[NCALLS];
volatile uint64_t sc_result[NCALLS], sc_user_flags[NCALLS], sc_user_rcx[NCALLS],
                  sc_user_r11[NCALLS], sc_user_rsp[NCALLS], sc_user_cs[NCALLS], sc_user_ss[NCALLS];
volatile uint64_t sc_preserved[8];

/* recorded by the kernel side */
static struct sc_frame seen[NCALLS];
static int nseen;

#define USER_STACK_SIZE 8192
static uint8_t user_stack[USER_STACK_SIZE] ALIGNED(16);

uint64_t sc_handler(struct sc_frame *f)
{
    if (f->nr == 99)
        user_return(f->a0);
    if (nseen < NCALLS)
        seen[nseen++] = *f;
    switch (f->nr) {
    case 1: return f->a0 * 2 + 1;
    case 2: return f->a0 | (f->a1 << 32);
    case 3: return 0xdeadbeefcafebabeull;
    default: return (uint64_t)-1;
    }
}

int guest_main(uint32_t magic, uint32_t mbi)
{
    (void)magic;
    (void)mbi;
    puts("syscall: start\n");
    sys_init();
    paging_set_user_all();

    uint32_t edx = 0;
    cpuid(0x80000001, 0, 0, 0, 0, &edx);
    CHECK(edx & (1u << 11), "CPUID.80000001h:EDX.SYSCALL not set");

    wrmsr(MSR_STAR, (0x20ull << 48) | ((uint64_t)SEL_KCODE << 32));
    wrmsr(MSR_LSTAR, (uint64_t)(uintptr_t)syscall_entry);
    wrmsr(MSR_FMASK, FMASK_BITS);
    wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SCE);
    printf("syscall: STAR=%lx LSTAR=%lx FMASK=%lx EFER.SCE=%d\n", rdmsr(MSR_STAR),
           rdmsr(MSR_LSTAR), rdmsr(MSR_FMASK), (int)(rdmsr(MSR_EFER) & 1));

    uint64_t rv = run_user(user_syscalls, user_stack + USER_STACK_SIZE);
    CHECK(rv == 0x99, "exit syscall value %lx", rv);
    CHECK(nseen == NCALLS, "kernel saw %d syscalls", nseen);

    static const uint64_t want_ret[NCALLS] = { 41, 0x567800001234ull, 0xdeadbeefcafebabeull };
    for (int i = 0; i < nseen; i++) {
        const struct sc_frame *f = &seen[i];
        int before = check_failures;
        CHECK(f->nr == (uint64_t)i + 1, "call %d: nr %lu", i + 1, f->nr);
        CHECK(f->rcx == sc_expect_rcx[i], "call %d: RCX %lx, want return address %lx", i + 1, f->rcx, sc_expect_rcx[i]);
        CHECK(f->r11 == sc_expect_r11[i], "call %d: R11 %lx, want user RFLAGS %lx", i + 1, f->r11, sc_expect_r11[i]);
        CHECK((f->kflags & FMASK_BITS) == 0, "call %d: kernel RFLAGS %lx not masked", i + 1, f->kflags);
        CHECK(f->kcs == SEL_KCODE && f->kss == SEL_KDATA, "call %d: kernel cs=%lx ss=%lx", i + 1, f->kcs, f->kss);
        CHECK(f->user_rsp == sc_expect_rsp[i], "call %d: RSP at entry %lx, want %lx", i + 1, f->user_rsp, sc_expect_rsp[i]);
        CHECK(sc_result[i] == want_ret[i], "call %d: returned %lx, want %lx", i + 1, sc_result[i], want_ret[i]);
        CHECK(sc_user_rcx[i] == sc_expect_rcx[i] && sc_user_r11[i] == sc_expect_r11[i],
              "call %d: after SYSRET rcx=%lx r11=%lx", i + 1, sc_user_rcx[i], sc_user_r11[i]);
        CHECK(sc_user_flags[i] == sc_expect_r11[i], "call %d: user RFLAGS after SYSRET %lx, want %lx",
              i + 1, sc_user_flags[i], sc_expect_r11[i]);
        CHECK(sc_user_cs[i] == SEL_UCODE && sc_user_ss[i] == SEL_UDATA, "call %d: user cs=%lx ss=%lx",
              i + 1, sc_user_cs[i], sc_user_ss[i]);
        CHECK(sc_user_rsp[i] == sc_expect_rsp[i], "call %d: user rsp %lx, want %lx", i + 1, sc_user_rsp[i], sc_expect_rsp[i]);
        if (check_failures == before)
            printf("syscall %d: ret=%lx user rflags=%lx kernel rflags=%lx cs/ss %lx/%lx -> %lx/%lx ok\n",
                   i + 1, sc_result[i], f->r11, f->kflags, f->kcs, f->kss, sc_user_cs[i], sc_user_ss[i]);
    }
    CHECK((sc_expect_r11[1] & 0x40400) == 0x40400, "call 2: DF/AC were not set in user RFLAGS (%lx)", sc_expect_r11[1]);

    static const uint64_t want_pres[8] = {
        0x0101010101010101ull, 0x0202020202020202ull, 0x0303030303030303ull, 0x0808080808080808ull,
        0x0909090909090909ull, 0x1010101010101010ull, 0x1212121212121212ull, 0x1515151515151515ull,
    };
    for (int i = 0; i < 8; i++)
        CHECK(sc_preserved[i] == want_pres[i], "call 3: register %d not preserved: %lx", i, sc_preserved[i]);
    return finish("syscall");
}

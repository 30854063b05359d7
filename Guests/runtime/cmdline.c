/* SwiftVMM test guests: key=value command-line parsing (also linked into
 * the native bench programs, bench/native/). */
#include "runtime.h"

bool cmdline_get(const char *key, char *out, size_t outlen)
{
    const char *s = boot_info.cmdline;
    size_t klen = strlen(key);
    while (*s) {
        while (*s == ' ')
            s++;
        const char *tok = s;
        while (*s && *s != ' ')
            s++;
        size_t tlen = (size_t)(s - tok);
        if (tlen > klen && tok[klen] == '=' && strncmp(tok, key, klen) == 0) {
            size_t vlen = tlen - klen - 1, i;
            for (i = 0; i < vlen && i + 1 < outlen; i++)
                out[i] = tok[klen + 1 + i];
            if (outlen)
                out[i] = 0;
            return true;
        }
    }
    return false;
}

uint64_t cmdline_uint(const char *key, uint64_t dflt)
{
    char buf[32];
    if (!cmdline_get(key, buf, sizeof buf))
        return dflt;
    const char *p = buf;
    uint64_t v = 0, base = 10;
    if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
        base = 16;
        p += 2;
    }
    bool any = false;
    for (; *p; p++) {
        int d;
        if (*p >= '0' && *p <= '9') d = *p - '0';
        else if (base == 16 && *p >= 'a' && *p <= 'f') d = *p - 'a' + 10;
        else if (base == 16 && *p >= 'A' && *p <= 'F') d = *p - 'A' + 10;
        else break;
        v = v * base + (uint64_t)d;
        any = true;
    }
    if (!any)
        return dflt;
    switch (*p) {
    case 'k': case 'K': v <<= 10; break;
    case 'm': case 'M': v <<= 20; break;
    case 'g': case 'G': v <<= 30; break;
    default: break;
    }
    return v;
}

/* SwiftVMM test guests: small printf-style formatter.
 * Supports %d %i %u %x %X %o %p %s %c %% with flags '-', '0', ' ', '+', '#',
 * field width (number or '*'), precision for %s, and the length modifiers
 * h, hh, l, ll, z, j, t. No floating point. */
#include "runtime.h"

struct sink {
    char *buf;      /* NULL: write to the serial port */
    size_t cap;
    size_t len;
};

static void emit(struct sink *s, char c)
{
    if (s->buf) {
        if (s->len + 1 < s->cap)
            s->buf[s->len] = c;
    } else {
        putc(c);
    }
    s->len++;
}

static void emit_padded(struct sink *s, const char *str, size_t n, int width, bool left, char pad)
{
    /* keep a leading sign / 0x prefix before zero padding */
    size_t prefix = 0;
    if (pad == '0' && !left) {
        if (n && (str[0] == '-' || str[0] == '+' || str[0] == ' '))
            prefix = 1;
        else if (n >= 2 && str[0] == '0' && (str[1] == 'x' || str[1] == 'X'))
            prefix = 2;
    }
    for (size_t i = 0; i < prefix; i++)
        emit(s, str[i]);
    int fill = width > (int)n ? width - (int)n : 0;
    if (!left)
        while (fill-- > 0)
            emit(s, pad);
    for (size_t i = prefix; i < n; i++)
        emit(s, str[i]);
    if (left)
        while (fill-- > 0)
            emit(s, ' ');
}

static int format(struct sink *s, const char *fmt, va_list ap)
{
    static const char lower[] = "0123456789abcdef";
    static const char upper[] = "0123456789ABCDEF";

    for (; *fmt; fmt++) {
        if (*fmt != '%') {
            emit(s, *fmt);
            continue;
        }
        fmt++;
        bool left = false, plus = false, space = false, alt = false;
        char pad = ' ';
        for (;; fmt++) {
            if (*fmt == '-') left = true;
            else if (*fmt == '0') pad = '0';
            else if (*fmt == '+') plus = true;
            else if (*fmt == ' ') space = true;
            else if (*fmt == '#') alt = true;
            else break;
        }
        int width = 0;
        if (*fmt == '*') {
            width = va_arg(ap, int);
            if (width < 0) {
                left = true;
                width = -width;
            }
            fmt++;
        } else {
            while (*fmt >= '0' && *fmt <= '9')
                width = width * 10 + (*fmt++ - '0');
        }
        int prec = -1;
        if (*fmt == '.') {
            fmt++;
            prec = 0;
            if (*fmt == '*') {
                prec = va_arg(ap, int);
                fmt++;
            } else {
                while (*fmt >= '0' && *fmt <= '9')
                    prec = prec * 10 + (*fmt++ - '0');
            }
        }
        int lmod = 0;   /* -2 hh, -1 h, 0 int, 1 long, 2 long long */
        for (;; fmt++) {
            if (*fmt == 'l') lmod++;
            else if (*fmt == 'h') lmod--;
            else if (*fmt == 'z' || *fmt == 'j' || *fmt == 't') lmod = 2;
            else break;
        }

        char tmp[72];
        char c = *fmt;
        switch (c) {
        case 'c': {
            char ch = (char)va_arg(ap, int);
            emit_padded(s, &ch, 1, width, left, ' ');
            break;
        }
        case 's': {
            const char *str = va_arg(ap, const char *);
            if (!str)
                str = "(null)";
            size_t n = 0;
            while (str[n] && (prec < 0 || (int)n < prec))
                n++;
            emit_padded(s, str, n, width, left, ' ');
            break;
        }
        case 'd': case 'i': case 'u': case 'x': case 'X': case 'o': case 'p': {
            uint64_t v;
            bool neg = false;
            if (c == 'p') {
                v = (uint64_t)(uintptr_t)va_arg(ap, void *);
                alt = true;
            } else if (c == 'd' || c == 'i') {
                int64_t sv;
                if (lmod >= 1) sv = va_arg(ap, long long);
                else sv = va_arg(ap, int);
                if (lmod == -1) sv = (short)sv;
                if (lmod <= -2) sv = (signed char)sv;
                neg = sv < 0;
                v = neg ? (uint64_t)0 - (uint64_t)sv : (uint64_t)sv;
            } else {
                if (lmod >= 1) v = va_arg(ap, unsigned long long);
                else v = va_arg(ap, unsigned int);
                if (lmod == -1) v = (uint16_t)v;
                if (lmod <= -2) v = (uint8_t)v;
            }
            unsigned base = (c == 'x' || c == 'X' || c == 'p') ? 16 : (c == 'o') ? 8 : 10;
            const char *digits = (c == 'X') ? upper : lower;
            char rev[24];
            int n = 0;
            do {
                rev[n++] = digits[v % base];
                v /= base;
            } while (v);
            while (prec > n && n < (int)sizeof rev)
                rev[n++] = '0';
            int k = 0;
            if (neg) tmp[k++] = '-';
            else if (plus && (c == 'd' || c == 'i')) tmp[k++] = '+';
            else if (space && (c == 'd' || c == 'i')) tmp[k++] = ' ';
            if (alt && base == 16) {
                tmp[k++] = '0';
                tmp[k++] = (c == 'X') ? 'X' : 'x';
            }
            while (n)
                tmp[k++] = rev[--n];
            emit_padded(s, tmp, (size_t)k, width, left, prec >= 0 ? ' ' : pad);
            break;
        }
        case '%':
            emit(s, '%');
            break;
        case 0:
            fmt--;
            break;
        default:
            emit(s, '%');
            emit(s, c);
            break;
        }
    }
    return (int)s->len;
}

int vprintf(const char *fmt, va_list ap)
{
    struct sink s = { 0, 0, 0 };
    return format(&s, fmt, ap);
}

int printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vprintf(fmt, ap);
    va_end(ap);
    return n;
}

int vsnprintf(char *buf, size_t n, const char *fmt, va_list ap)
{
    char dummy;
    struct sink s = { n ? buf : &dummy, n ? n : 1, 0 };
    int r = format(&s, fmt, ap);
    if (n)
        buf[s.len < n ? s.len : n - 1] = 0;
    return r;
}

int snprintf(char *buf, size_t n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(buf, n, fmt, ap);
    va_end(ap);
    return r;
}

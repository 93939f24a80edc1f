/*
 * tls_mem.c -- exact per-connection memory accounting (tls_conn_memory).
 *
 * Every tls_conn owns an account. While tls/ works on behalf of a connection
 * (tls_mem_scope), the allocations made are charged to its account:
 *
 * - mbedTLS built with MBEDTLS_PLATFORM_MEMORY (our own 3.6 build): calloc
 *   and free are hooked with mbedtls_platform_set_calloc_free. Each block
 *   carries a small header naming its account and size, so a block freed
 *   later (or by someone else) is credited to the account that paid for it.
 *   The count is the bytes of those blocks (header included); the C
 *   library's own per-block overhead (8-16 bytes) is not in it. The hook is
 *   set before main() (a constructor), so every mbedTLS block has a header.
 * - otherwise (Debian 12's 2.28 has no hook): malloc's own figure
 *   (mallinfo2().uordblks, allocator overhead included) is read when a scope
 *   starts and ends, and the difference is charged. The process is
 *   single-threaded, so nothing else allocates in between. Only connection
 *   setup and handshake calls are metered this way (2.28 allocates nothing
 *   for a TLS 1.2 connection after its handshake, and mallinfo2 is too slow
 *   for every read).
 */
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "mbedtls/platform.h"

#include "tls/tls_int.h"

struct tls_mem_account {
    long long bytes; /* charged and not yet returned */
    size_t blocks;   /* hooked blocks still carrying this account */
    bool dead;       /* the connection is gone; free when blocks == 0 */
};

static tls_mem_account *g_current;

/* mbedtls_platform_set_calloc_free exists unless both macros fix the
 * functions at compile time (mbedtls/platform.h). */
#if defined(MBEDTLS_PLATFORM_MEMORY) &&                                                            \
    !(defined(MBEDTLS_PLATFORM_CALLOC_MACRO) && defined(MBEDTLS_PLATFORM_FREE_MACRO))
#define TLS_MEM_HOOKED 1

#define MEM_MAGIC 0x746c736d656d0001ULL
typedef struct {
    unsigned long long magic;
    tls_mem_account *acct;
    size_t size;
    size_t pad; /* keeps the user block 16-byte aligned */
} mem_hdr;

static void account_put(tls_mem_account *a)
{
    if (--a->blocks == 0 && a->dead) free(a);
}

static void *hook_calloc(size_t n, size_t size)
{
    if (size && n > (((size_t)-1) - sizeof(mem_hdr)) / size) return NULL;
    mem_hdr *h = calloc(1, sizeof *h + n * size);
    if (h == NULL) return NULL;
    h->magic = MEM_MAGIC;
    h->acct = g_current;
    h->size = sizeof *h + n * size; /* what the block really holds, header included */
    if (g_current) {
        g_current->bytes += (long long)h->size;
        g_current->blocks++;
    }
    return h + 1;
}

static void hook_free(void *p)
{
    if (p == NULL) return;
    mem_hdr *h = (mem_hdr *)p - 1;
    if (h->magic != MEM_MAGIC) { /* allocated before the hook was set */
        free(p);
        return;
    }
    h->magic = 0;
    if (h->acct) {
        h->acct->bytes -= (long long)h->size;
        account_put(h->acct);
    }
    free(h);
}

void tls_mem_init(void)
{
    static bool done;
    if (done) return;
    done = true;
    mbedtls_platform_set_calloc_free(hook_calloc, hook_free);
}

/* Before main(): no mbedTLS block may be allocated without the hook and
 * freed with it (acl/ uses mbedTLS before the first TLS setup). */
__attribute__((constructor)) static void mem_hook_early(void)
{
    tls_mem_init();
}

static void checkpoint(void) {}
#else
#define TLS_MEM_HOOKED 0

static size_t g_mark;

void tls_mem_init(void) {}

static size_t heap_in_use(void)
{
#if defined(__GLIBC__)
    return mallinfo2().uordblks;
#else
    return 0;
#endif
}

/* Charges what the heap grew or shrank since the last mark to the account
 * in charge, and sets a new mark. */
static void checkpoint(void)
{
    size_t now = heap_in_use();
    if (g_current) g_current->bytes += (long long)now - (long long)g_mark;
    g_mark = now;
}
#endif

bool tls_mem_hooked(void)
{
    return TLS_MEM_HOOKED;
}

tls_mem_account *tls_mem_account_new(void)
{
    tls_mem_account *a = calloc(1, sizeof *a);
    if (a) a->blocks = 1; /* the connection's own reference */
    return a;
}

void tls_mem_account_release(tls_mem_account *a)
{
    if (a == NULL) return;
    a->dead = true;
    if (--a->blocks == 0) free(a);
}

size_t tls_mem_account_bytes(const tls_mem_account *a)
{
    if (a == NULL || a->bytes < 0) return 0;
    return (size_t)a->bytes + sizeof *a;
}

tls_mem_account *tls_mem_scope(tls_mem_account *a)
{
    tls_mem_account *prev = g_current;
    if (!TLS_MEM_HOOKED && a == prev) return prev;
    checkpoint();
    g_current = a;
    return prev;
}

void *tls_mem_calloc(size_t n, size_t size)
{
    return mbedtls_calloc(n, size);
}

void tls_mem_free(void *p)
{
    mbedtls_free(p);
}

char *tls_mem_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = mbedtls_calloc(1, n);
    if (d) memcpy(d, s, n);
    return d;
}

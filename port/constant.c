/* Constant look-ups over the generated per-platform tables. */
#include <ctype.h>
#include <string.h>

#include "niche.h"

int niche_constant_lookup(int family, const char *name, size_t len, long long *val)
{
    char low[64];
    if (family < 0 || family >= NICHE_NFAMILIES || len == 0 || len >= sizeof(low))
        return -1;
    for (size_t i = 0; i < len; i++)
        low[i] = tolower((unsigned char)name[i]);
    low[len] = 0;
    for (const struct niche_constant *c = niche_families[family]; c->name; c++)
        if (!strcmp(c->name, low)) {
            *val = c->value;
            return 0;
        }
    return -1;
}

const char *niche_constant_name(int family, long long value)
{
    for (const struct niche_constant *c = niche_families[family]; c->name; c++)
        if (c->value == value)
            return c->name;
    return NULL;
}

const char *niche_errno_name(int e)
{
    const char *n = niche_constant_name(NICHE_FAM_ERRNO, e);
    return n ? n : "eunknown";
}

const char *niche_signal_name(int sig)
{
    const char *n = niche_constant_name(NICHE_FAM_SIGNAL, sig);
    return n ? n : "sigunknown";
}

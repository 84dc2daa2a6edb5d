/* Status of a mount as extended attributes: see fs_xattr.h. */
#include "fs/fs_xattr.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/bitmap.h"
#include "net/sock.h"

static const char *const file_attrs[] = {
    STATUS_XATTR_CASCADE_HASH, STATUS_XATTR_SIZE, STATUS_XATTR_BLOCK_SIZE,
    STATUS_XATTR_BLOCKS_TOTAL, STATUS_XATTR_BLOCKS_HELD, STATUS_XATTR_PEERS_KNOWN,
    STATUS_XATTR_PEERS_CONNECTED, STATUS_XATTR_BYTES_FETCHED, STATUS_XATTR_BYTES_SERVED,
    STATUS_XATTR_MAP,
};
static const char *const root_attrs[] = {
    STATUS_XATTR_FILES, STATUS_XATTR_SERVER, STATUS_XATTR_BUFFERS, STATUS_XATTR_BUFFERS_PEAK,
    STATUS_XATTR_BUFFERS_LIMIT, STATUS_XATTR_TABLES, STATUS_XATTR_STORES_OPEN,
    STATUS_XATTR_CONTROL,
};

#define N_ITEMS(a) (sizeof(a) / sizeof((a)[0]))

/* Copy a finished value out with getxattr's size rules. */
static int xattr_reply(const char *text, size_t len, char *value, size_t size)
{
    if (len > INT32_MAX)
        return -E2BIG;
    if (size == 0)
        return (int)len;
    if (size < len)
        return -ERANGE;
    memcpy(value, text, len);
    return (int)len;
}

/* Character for blocks [first, end): '#' all held, '+' some, '.' none. */
static char map_char(const uint8_t *bits, uint64_t first, uint64_t end)
{
    uint64_t held = bitmap_count_range(bits, first, end);
    return held == 0 ? '.' : held == end - first ? '#' : '+';
}

static int xattr_map(struct fs_file *f, char *value, size_t size)
{
    uint64_t n = f->meta.block_count;
    uint64_t cols = n < STATUS_XATTR_MAP_MAX ? n : STATUS_XATTR_MAP_MAX;
    uint8_t *bits = calloc(bitmap_bytes(n) + 1, 1);
    char *text = malloc((size_t)cols + 1);
    int rc = -ENOMEM;
    if (bits && text) {
        node_file_held_map(f->nf, bits);
        for (uint64_t c = 0; c < cols; c++)
            text[c] = map_char(bits, c * n / cols, (c + 1) * n / cols);
        rc = xattr_reply(text, (size_t)cols, value, size);
    }
    free(bits);
    free(text);
    return rc;
}

/* Every numeric or short text attribute of a file into text. */
static int file_attr_text(struct fs_file *f, const char *attr, char *text, size_t textlen)
{
    struct node_file_stats fs = {0};
    if (f->nf)
        node_file_get_stats(f->nf, &fs);
    uint64_t v;
    if (!strcmp(attr, STATUS_XATTR_CASCADE_HASH))
        return snprintf(text, textlen, "%s", f->hash_hex);
    else if (!strcmp(attr, STATUS_XATTR_SIZE))
        v = f->meta.size;
    else if (!strcmp(attr, STATUS_XATTR_BLOCK_SIZE))
        v = f->meta.block_size;
    else if (!strcmp(attr, STATUS_XATTR_BLOCKS_TOTAL))
        v = f->meta.block_count;
    else if (!strcmp(attr, STATUS_XATTR_BLOCKS_HELD))
        v = fs.blocks_held;
    else if (!strcmp(attr, STATUS_XATTR_PEERS_KNOWN))
        v = fs.peers_known;
    else if (!strcmp(attr, STATUS_XATTR_PEERS_CONNECTED))
        v = fs.peers_connected;
    else if (!strcmp(attr, STATUS_XATTR_BYTES_FETCHED))
        v = fs.bytes_fetched;
    else if (!strcmp(attr, STATUS_XATTR_BYTES_SERVED))
        v = fs.bytes_served;
    else
        return -ENODATA;
    return snprintf(text, textlen, "%" PRIu64, v);
}

static int root_attr_text(struct fs_mount *m, const char *attr, char *text, size_t textlen)
{
    if (!strcmp(attr, STATUS_XATTR_FILES))
        return snprintf(text, textlen, "%zu", m->n_files);
    if (!strcmp(attr, STATUS_XATTR_SERVER)) {
        sock_format_addr(&m->server_addr, text, textlen);
        return (int)strlen(text);
    }
    if (!m->node)
        return -ENODATA;
    struct node_stats ns;
    node_get_stats(m->node, &ns);
    size_t v;
    if (!strcmp(attr, STATUS_XATTR_BUFFERS))
        v = ns.buffer_bytes;
    else if (!strcmp(attr, STATUS_XATTR_BUFFERS_PEAK))
        v = ns.buffer_bytes_peak;
    else if (!strcmp(attr, STATUS_XATTR_BUFFERS_LIMIT))
        v = ns.buffer_limit;
    else if (!strcmp(attr, STATUS_XATTR_TABLES))
        v = ns.table_bytes;
    else if (!strcmp(attr, STATUS_XATTR_STORES_OPEN))
        v = ns.stores_open;
    else
        return -ENODATA;
    return snprintf(text, textlen, "%zu", v);
}

int fs_xattr_get(struct fs_mount *m, struct fs_file *f, const char *name,
                 char *value, size_t size)
{
    size_t plen = strlen(STATUS_XATTR_PREFIX);
    if (strncmp(name, STATUS_XATTR_PREFIX, plen) != 0)
        return -ENODATA;
    const char *attr = name + plen;
    if (f && !strcmp(attr, STATUS_XATTR_MAP))
        return f->nf ? xattr_map(f, value, size) : -ENODATA;
    if (!f && !strcmp(attr, STATUS_XATTR_CONTROL)) {   /* a path: longer than text below */
        const char *path = m->status ? node_status_socket(m->status) : NULL;
        return path ? xattr_reply(path, strlen(path), value, size) : -ENODATA;
    }
    char text[CASCADE_HEX_LEN + 32];
    int len = f ? file_attr_text(f, attr, text, sizeof text)
                : root_attr_text(m, attr, text, sizeof text);
    if (len < 0)
        return len;
    return xattr_reply(text, (size_t)len, value, size);
}

int fs_xattr_list(struct fs_file *f, char *list, size_t size)
{
    const char *const *names = f ? file_attrs : root_attrs;
    size_t n = f ? N_ITEMS(file_attrs) : N_ITEMS(root_attrs);
    size_t plen = strlen(STATUS_XATTR_PREFIX), total = 0;
    for (size_t i = 0; i < n; i++)
        total += plen + strlen(names[i]) + 1;
    if (size == 0)
        return (int)total;
    if (size < total)
        return -ERANGE;
    char *p = list;
    for (size_t i = 0; i < n; i++)
        p += sprintf(p, "%s%s", STATUS_XATTR_PREFIX, names[i]) + 1;
    return (int)total;
}

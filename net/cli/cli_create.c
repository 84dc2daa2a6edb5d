/* `cascade create`, `cascade info` and `cascade verify`: the commands that
 * only deal with .cascade files and local data, no network. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/create.h"
#include "cascade/meta.h"
#include "cascade/progress.h"
#include "cascade/sha256.h"
#include "cascade/util.h"
#include "net/cli/cli.h"
#include "net/cli/json.h"

/* Most bad blocks verify lists one by one before summarising. */
enum { MAX_LISTED = 20, VERIFY_CHUNK = 1 << 20 };

/* A .cascade problem is bad input (2); failing to read it at all is too. */
static int meta_exit_code(int rc)
{
    return rc == CASCADE_META_ENOMEM ? CASCADE_EXIT_FAIL : CASCADE_EXIT_USAGE;
}

static void print_hash(const char *label, const uint8_t *hash)
{
    char hex[CASCADE_HEX_LEN];
    cascade_hex(hash, CASCADE_HASH_LEN, hex);
    printf("%-14s %s\n", label, hex);
}

/* ---- create ---- */

static void create_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade create DATA [-b BLOCKSIZE] [-o OUT.cascade] [-f] [-q]\n"
        "Hash DATA in blocks and write its .cascade metadata file.\n"
        "  -b, --block-size SIZE  block size in bytes, suffixes K/KiB/M/MiB/G/GiB (default 1MiB)\n"
        "  -o, --output FILE      where to write (default DATA.cascade)\n"
        "  -f, --force            overwrite FILE if it exists\n"
        "  -q, --quiet            no progress display\n"
        "  -h, --help             this text\n"
        "Prints the output path and its cascade hash (the name peers and trackers use).\n");
}

struct create_opts {
    const char *data;
    const char *out;
    uint64_t block_size;
    bool force, quiet;
};

static int parse_create(int argc, char **argv, struct create_opts *o)
{
    static const struct option longopts[] = {
        {"block-size", required_argument, NULL, 'b'}, {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'}, {"quiet", no_argument, NULL, 'q'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    int c;
    o->block_size = CASCADE_DEFAULT_BLOCK_SIZE;
    while ((c = getopt_long(argc, argv, "b:o:fqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (cascade_parse_size(optarg, &o->block_size) != 0 || o->block_size == 0) {
                fprintf(stderr, "cascade create: bad block size '%s': give a whole number "
                        ">= 1, optionally with K, M or G (e.g. 256K)\n", optarg);
                return CASCADE_EXIT_USAGE;
            }
            break;
        case 'o': o->out = optarg; break;
        case 'f': o->force = true; break;
        case 'q': o->quiet = true; break;
        case 'h': create_usage(stdout); return CASCADE_EXIT_OK;
        default: create_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "cascade create: expected one DATA file, got %d arguments\n", argc - optind);
        create_usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    o->data = argv[optind];
    return -1;   /* go on */
}

/* Check the inputs before hashing anything, so mistakes are reported fast. */
static int check_create_paths(const struct create_opts *o, uint64_t *size)
{
    struct stat st;
    char err[CASCADE_ERRLEN];
    int fd = cascade_open_regular(o->data, O_RDONLY, 0, &st, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "cascade create: %s\n", err);
        return CASCADE_EXIT_USAGE;
    }
    close(fd);
    *size = (uint64_t)st.st_size;
    if (!o->force && lstat(o->out, &st) == 0) {
        fprintf(stderr, "cascade create: %s already exists; use -f to overwrite it "
                "or -o to write elsewhere\n", o->out);
        return CASCADE_EXIT_USAGE;
    }
    return -1;
}

/* Hash the data and report the result; the exit code. */
static int run_create(const struct create_opts *o, uint64_t size)
{
    struct cascade_progress progress;
    uint8_t hash[CASCADE_HASH_LEN];
    char err[CASCADE_ERRLEN];
    cascade_progress_init(&progress, "hashing", size, true, o->quiet);
    int rc = cascade_create(o->data, o->block_size, o->out, &progress, hash, err, sizeof err);
    cascade_progress_finish(&progress);
    if (rc != 0) {
        fprintf(stderr, "cascade create: %s\n", err);
        return CASCADE_EXIT_FAIL;
    }
    char hex[CASCADE_HEX_LEN];
    cascade_hex(hash, CASCADE_HASH_LEN, hex);
    printf("%s\n%s\n", o->out, hex);
    return CASCADE_EXIT_OK;
}

int cli_create(int argc, char **argv)
{
    struct create_opts o = {0};
    int rc = parse_create(argc, argv, &o);
    if (rc >= 0)
        return rc;
    char *default_out = NULL;
    if (!o.out) {
        size_t len = strlen(o.data) + sizeof ".cascade";
        if (!(default_out = malloc(len))) {
            fprintf(stderr, "cascade create: out of memory\n");
            return CASCADE_EXIT_FAIL;
        }
        snprintf(default_out, len, "%s.cascade", o.data);
        o.out = default_out;
    }
    uint64_t size = 0;
    rc = check_create_paths(&o, &size);
    if (rc < 0)
        rc = run_create(&o, size);
    free(default_out);
    return rc;
}

/* ---- info ---- */

static void info_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade info [--blocks] [--json] FILE.cascade\n"
        "Show what a .cascade file describes.\n"
        "  --blocks    also list every block's hash\n"
        "  --json      print one JSON object (keys in cascade(1))\n"
        "  -h, --help  this text\n");
}

static void print_info(const struct cascade_meta *m, bool blocks)
{
    char human[32];
    cascade_human_bytes(m->size, human, sizeof human);
    printf("%-14s %s\n", "name", m->name ? m->name : "");
    printf("%-14s %llu (%s)\n", "size", (unsigned long long)m->size, human);
    printf("%-14s %llu\n", "block size", (unsigned long long)m->block_size);
    printf("%-14s %llu\n", "blocks", (unsigned long long)m->block_count);
    printf("%-14s %llu\n", "last block",
           (unsigned long long)(m->block_count ? cascade_meta_block_len(m, m->block_count - 1) : 0));
    print_hash("cascade hash", m->cascade_hash);
    print_hash("target hash", m->target_hash);
    for (uint64_t i = 0; blocks && i < m->block_count; i++) {
        char hex[CASCADE_HEX_LEN];
        cascade_hex(cascade_meta_block_hash(m, i), CASCADE_HASH_LEN, hex);
        printf("block %llu %s\n", (unsigned long long)i, hex);
    }
}

/* The same facts as one JSON object; the keys are documented in cascade(1)
 * and stay stable. 0, or -1 when stdout could not be written. */
static int print_info_json(const struct cascade_meta *m, bool blocks)
{
    char hex[CASCADE_HEX_LEN];
    struct json_writer j;
    json_begin(&j, stdout);
    json_object_begin(&j, NULL);
    json_string(&j, "name", m->name);
    json_u64(&j, "size", m->size);
    json_u64(&j, "block_size", m->block_size);
    json_u64(&j, "block_count", m->block_count);
    json_u64(&j, "last_block_size",
             m->block_count ? cascade_meta_block_len(m, m->block_count - 1) : 0);
    cascade_hex(m->cascade_hash, CASCADE_HASH_LEN, hex);
    json_string(&j, "cascade_hash", hex);
    cascade_hex(m->target_hash, CASCADE_HASH_LEN, hex);
    json_string(&j, "target_hash", hex);
    if (blocks) {
        json_array_begin(&j, "blocks");
        for (uint64_t i = 0; i < m->block_count; i++) {
            cascade_hex(cascade_meta_block_hash(m, i), CASCADE_HASH_LEN, hex);
            json_string(&j, NULL, hex);
        }
        json_array_end(&j);
    }
    json_object_end(&j);
    return json_end(&j);
}

int cli_info(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"blocks", no_argument, NULL, 'B'}, {"json", no_argument, NULL, 'J'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    bool blocks = false, json = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'B': blocks = true; break;
        case 'J': json = true; break;
        case 'h': info_usage(stdout); return CASCADE_EXIT_OK;
        default: info_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "cascade info: expected one FILE.cascade, got %d arguments\n",
                argc - optind);
        info_usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    struct cascade_meta m;
    char err[CASCADE_ERRLEN];
    int rc = cascade_meta_load(argv[optind], &m, err, sizeof err);
    if (rc != CASCADE_META_OK) {
        fprintf(stderr, "cascade info: %s\n", err);
        return meta_exit_code(rc);
    }
    rc = CASCADE_EXIT_OK;
    if (!json)
        print_info(&m, blocks);
    else if (print_info_json(&m, blocks) != 0) {
        fprintf(stderr, "cascade info: could not write the JSON output: %s\n", strerror(errno));
        rc = CASCADE_EXIT_FAIL;
    }
    cascade_meta_free(&m);
    return rc;
}

/* ---- verify ---- */

static void verify_usage(FILE *out)
{
    fprintf(out,
        "usage: cascade verify [-q] FILE.cascade DATA\n"
        "Check DATA block by block against FILE.cascade.\n"
        "  -q, --quiet  no progress display\n"
        "  -h, --help   this text\n"
        "Exit status 0 when every block and the whole file match, 1 when not.\n");
}

/* Running state while DATA streams past. */
struct verifier {
    const struct cascade_meta *m;
    struct cascade_sha256 *block, *whole;
    uint64_t pos;        /* bytes of DATA seen */
    uint64_t idx;        /* current block */
    uint64_t in_block;   /* bytes of it hashed */
    uint64_t bad;        /* blocks with a wrong hash */
};

static void report_bad(struct verifier *v, uint64_t idx)
{
    if (++v->bad <= MAX_LISTED)
        printf("block %llu: hash mismatch (bytes %llu..%llu)\n", (unsigned long long)idx,
               (unsigned long long)cascade_meta_block_offset(v->m, idx),
               (unsigned long long)(cascade_meta_block_offset(v->m, idx) +
                                    cascade_meta_block_len(v->m, idx) - 1));
}

static int end_block(struct verifier *v)
{
    uint8_t got[CASCADE_HASH_LEN];
    if (cascade_sha256_final(v->block, got) != 0)
        return -1;
    if (memcmp(got, cascade_meta_block_hash(v->m, v->idx), CASCADE_HASH_LEN) != 0)
        report_bad(v, v->idx);
    v->idx++;
    v->in_block = 0;
    return 0;
}

/* Hash a buffer against the blocks; bytes past the declared size only go
 * into the whole-file hash. */
static int verify_chunk(struct verifier *v, const uint8_t *buf, size_t len)
{
    if (cascade_sha256_update(v->whole, buf, len) != 0)
        return -1;
    while (len > 0 && v->idx < v->m->block_count) {
        uint64_t room = cascade_meta_block_len(v->m, v->idx) - v->in_block;
        size_t take = room < len ? (size_t)room : len;
        if (cascade_sha256_update(v->block, buf, take) != 0)
            return -1;
        v->in_block += take;
        buf += take;
        len -= take;
        if (v->in_block == cascade_meta_block_len(v->m, v->idx) && end_block(v) != 0)
            return -1;
    }
    return 0;
}

static int verify_stream(int fd, const char *path, struct verifier *v,
                         struct cascade_progress *progress)
{
    uint8_t *buf = malloc(VERIFY_CHUNK);
    if (!buf) {
        fprintf(stderr, "cascade verify: out of memory\n");
        return -1;
    }
    int rc = 0;
    for (;;) {
        ssize_t n = read(fd, buf, VERIFY_CHUNK);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            fprintf(stderr, "cascade verify: %s: read: %s\n", path, strerror(errno));
        else if (n > 0 && verify_chunk(v, buf, (size_t)n) != 0)
            fprintf(stderr, "cascade verify: SHA-256 failed\n");
        else if (n > 0) {
            v->pos += (uint64_t)n;
            cascade_progress_update(progress, v->pos);
            continue;
        }
        rc = n == 0 ? 0 : -1;
        break;
    }
    free(buf);
    return rc;
}

/* Summarise what the stream found; returns the exit code. */
static int verify_report(struct verifier *v)
{
    const struct cascade_meta *m = v->m;
    uint8_t whole[CASCADE_HASH_LEN];
    /* A partly read last block counts as missing, not as a mismatch. */
    uint64_t missing = m->block_count - v->idx;
    if (v->bad > MAX_LISTED)
        printf("... and %llu more mismatching blocks\n", (unsigned long long)(v->bad - MAX_LISTED));
    if (missing)
        printf("blocks %llu..%llu: missing (data is %llu bytes, expected %llu)\n",
               (unsigned long long)v->idx, (unsigned long long)(m->block_count - 1),
               (unsigned long long)v->pos, (unsigned long long)m->size);
    else if (v->pos > m->size)
        printf("data has %llu bytes more than the %llu expected\n",
               (unsigned long long)(v->pos - m->size), (unsigned long long)m->size);
    if (cascade_sha256_final(v->whole, whole) != 0) {
        fprintf(stderr, "cascade verify: SHA-256 failed\n");
        return CASCADE_EXIT_FAIL;
    }
    bool whole_ok = memcmp(whole, m->target_hash, CASCADE_HASH_LEN) == 0;
    printf("whole file: %s\n", whole_ok ? "hash matches" : "hash MISMATCH");
    if (v->bad || missing || v->pos != m->size || !whole_ok) {
        printf("FAILED: %llu of %llu blocks bad, %llu missing\n", (unsigned long long)v->bad,
               (unsigned long long)m->block_count, (unsigned long long)missing);
        return CASCADE_EXIT_FAIL;
    }
    printf("OK: all %llu blocks match\n", (unsigned long long)m->block_count);
    return CASCADE_EXIT_OK;
}

static int verify_data(const struct cascade_meta *m, const char *data, bool quiet)
{
    char err[CASCADE_ERRLEN];
    int fd = cascade_open_regular(data, O_RDONLY, 0, NULL, err, sizeof err);
    if (fd < 0) {
        fprintf(stderr, "cascade verify: %s\n", err);
        return CASCADE_EXIT_USAGE;
    }
    struct verifier v = {.m = m, .block = cascade_sha256_new(), .whole = cascade_sha256_new()};
    struct cascade_progress progress;
    int rc = CASCADE_EXIT_FAIL;
    cascade_progress_init(&progress, "verifying", m->size, true, quiet);
    if (!v.block || !v.whole)
        fprintf(stderr, "cascade verify: out of memory\n");
    else {
        int streamed = verify_stream(fd, data, &v, &progress);
        cascade_progress_finish(&progress);
        if (streamed == 0)
            rc = verify_report(&v);
    }
    cascade_sha256_free(v.block);
    cascade_sha256_free(v.whole);
    close(fd);
    return rc;
}

int cli_verify(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"quiet", no_argument, NULL, 'q'}, {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0},
    };
    bool quiet = false;
    int c;
    while ((c = getopt_long(argc, argv, "qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'q': quiet = true; break;
        case 'h': verify_usage(stdout); return CASCADE_EXIT_OK;
        default: verify_usage(stderr); return CASCADE_EXIT_USAGE;
        }
    }
    if (argc - optind != 2) {
        fprintf(stderr, "cascade verify: expected FILE.cascade and DATA, got %d arguments\n",
                argc - optind);
        verify_usage(stderr);
        return CASCADE_EXIT_USAGE;
    }
    struct cascade_meta m;
    char err[CASCADE_ERRLEN];
    int rc = cascade_meta_load(argv[optind], &m, err, sizeof err);
    if (rc != CASCADE_META_OK) {
        fprintf(stderr, "cascade verify: %s\n", err);
        return meta_exit_code(rc);
    }
    rc = verify_data(&m, argv[optind + 1], quiet);
    cascade_meta_free(&m);
    return rc;
}

/* Command line of cascadefs: see fs_options.h. */
#include "fs/fs_options.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cascade/store_cache.h"
#include "cascade/util.h"
#include "net/node.h"
#include "net/sock.h"

enum { KEY_HELP, KEY_VERSION };

/* One table for every option of ours, like sshfs: each entry names the
 * field it fills. */
#define FS_OPT(templ, field, value) { templ, offsetof(struct fs_options, field), value }

static const struct fuse_opt fs_opt_table[] = {
    FS_OPT("tracker=%s", tracker, 0),
    FS_OPT("listen=%s", listen, 0),
    FS_OPT("cache=%s", cache, 0),
    FS_OPT("data=%s", data, 0),
    FS_OPT("readahead=%u", readahead, 0),
    FS_OPT("timeout=%u", timeout, 0),
    FS_OPT("upload_slots=%u", upload_slots, 0),
    FS_OPT("fill", fill, 1),
    FS_OPT("nosplice", nosplice, 1),
    FS_OPT("stack", stack, 1),
    FS_OPT("cache_max=%s", cache_max_arg, 0),
    FS_OPT("verify=%s", verify_arg, 0),
    FUSE_OPT_KEY("-h", KEY_HELP),
    FUSE_OPT_KEY("--help", KEY_HELP),
    FUSE_OPT_KEY("-V", KEY_VERSION),
    FUSE_OPT_KEY("--version", KEY_VERSION),
    FUSE_OPT_END
};

void fs_options_usage(const char *prog, FILE *out)
{
    fprintf(out,
        "usage: %s [options] FILE.cascade... | DIR  MOUNTPOINT\n"
        "\n"
        "Mount .cascade files (or every .cascade file in DIR) read-only at MOUNTPOINT:\n"
        "NAME.cascade shows as the file NAME at its full size; a read fetches only the\n"
        "blocks under it from peers, checks each against its hash, keeps it in the cache\n"
        "and serves it to other peers while mounted.\n"
        "\n"
        "cascadefs options (-o opt,opt,...):\n"
        "    -o tracker=HOST:PORT   tracker (default $CASCADE_TRACKER or %s)\n"
        "    -o listen=IP:PORT      serve blocks to peers here (default %s: any port)\n"
        "    -o cache=DIR           block cache (default $XDG_CACHE_HOME/cascadefs\n"
        "                           or ~/.cache/cascadefs)\n"
        "    -o data=PATH           use this local data file (one .cascade only)\n"
        "    -o cache_max=SIZE      keep the cache's data within SIZE (K, M, G, T, or a\n"
        "                           share of its filesystem like 10%%): the least\n"
        "                           recently read blocks are evicted (default: no limit)\n"
        "    -o verify=WHEN         hash cached bytes again before showing or serving\n"
        "                           them: first (once per mount, default), always, never\n"
        "    -o readahead=N         read-ahead beyond a sequential run, in blocks: the\n"
        "                           window is the run so far plus N blocks, up to\n"
        "                           64 MiB (default %d; 0 turns it off)\n"
        "    -o fill                fetch every block in the background\n"
        "    -o nosplice            copy read replies through memory instead of\n"
        "                           splicing them from the data file (slower)\n"
        "    -o timeout=SECONDS     a read waits this long for its blocks, then\n"
        "                           fails with EIO (default %d)\n"
        "    -o upload_slots=N      blocks sent to peers at once, the rest queued\n"
        "                           (default 4; raise it on an uplink much faster\n"
        "                           than your peers' links)\n"
        "    -o stack               mount even where a cascadefs mount already is\n"
        "                           (refused by default: unmount that one first)\n"
        "    -f                     stay in the foreground (log to stderr)\n"
        "    -d                     debug: foreground, log each fetch and serve\n"
        "    -s                     single-threaded\n"
        "    -h, --help             this text;  -V, --version  the version\n"
        "\n"
        "/etc/fstab (mount.fuse3 runs `cascadefs SOURCE MOUNTPOINT -o OPTIONS`):\n"
        "    /srv/x.cascade  /mnt/x  fuse.cascadefs  ro,tracker=127.0.0.1:8888,allow_other  0 0\n"
        "\n"
        "Unmount with `fusermount3 -u MOUNTPOINT` (or SIGTERM). Progress: `cascade status\n"
        "MOUNTPOINT` or `getfattr -d -m user.cascade MOUNTPOINT/NAME`.\n"
        "Exit status: 0 mounted, 1 runtime failure, 2 bad usage or bad input.\n",
        prog, TRACKER_DEFAULT_ADDR, FS_DEFAULT_LISTEN, FS_DEFAULT_READAHEAD_BLOCKS,
        FS_DEFAULT_TIMEOUT_S);
}

/* Non-option arguments are collected (and kept out of libfuse's way);
 * --help and --version are ours. Everything else goes on to libfuse. */
static int fs_opt_proc(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    struct fs_options *opts = data;
    (void)outargs;
    switch (key) {
    case FUSE_OPT_KEY_NONOPT: {
        char **grown = realloc(opts->positionals, (opts->n_positionals + 1) * sizeof *grown);
        if (!grown)
            return -1;
        opts->positionals = grown;
        if (!(grown[opts->n_positionals] = strdup(arg)))
            return -1;
        opts->n_positionals++;
        return 0;
    }
    case KEY_HELP:
        opts->show_help = 1;
        return 0;
    case KEY_VERSION:
        opts->show_version = 1;
        return 0;
    default:
        return 1;
    }
}

static int parse_addresses(struct fs_options *opts, char *err, size_t errlen)
{
    char why[CASCADE_ERRLEN];
    if (tracker_list_parse(opts->tracker, &opts->trackers, err, errlen) != 0)
        return -1;
    const char *listen = opts->listen ? opts->listen : FS_DEFAULT_LISTEN;
    if (sock_parse_addr(listen, "0.0.0.0", 0, &opts->listen_addr, why, sizeof why) != 0) {
        cascade_errf(err, errlen, "bad listen address '%s': %s", listen, why);
        return -1;
    }
    return 0;
}

/* In the background the process works from "/": make a relative path
 * absolute while the caller's working folder is still ours. */
static int make_absolute(char **path, char *err, size_t errlen)
{
    if (!*path || (*path)[0] == '/')
        return 0;
    char cwd[4096];
    if (!getcwd(cwd, sizeof cwd)) {
        cascade_errf(err, errlen, "cannot resolve %s: %s", *path, strerror(errno));
        return -1;
    }
    size_t len = strlen(cwd) + strlen(*path) + 2;
    char *abs = malloc(len);
    if (!abs) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(abs, len, "%s/%s", cwd, *path);
    free(*path);
    *path = abs;
    return 0;
}

static int parse_cache_options(struct fs_options *opts, char *err, size_t errlen)
{
    char why[CASCADE_ERRLEN];
    if (opts->cache_max_arg &&
        cascade_cache_parse_limit(opts->cache_max_arg, opts->cache, &opts->cache_max,
                                  why, sizeof why) != 0) {
        cascade_errf(err, errlen, "cache_max: %s", why);
        return -1;
    }
    static const char *const modes[] = {"first", "always", "never"};
    opts->verify = CASCADE_VERIFY_FIRST;
    if (!opts->verify_arg)
        return 0;
    for (int i = 0; i < 3; i++) {
        if (!strcmp(opts->verify_arg, modes[i])) {
            opts->verify = (enum cascade_verify)i;
            return 0;
        }
    }
    cascade_errf(err, errlen, "verify=%s: give first, always or never", opts->verify_arg);
    return -1;
}

static int check_options(struct fs_options *opts, char *err, size_t errlen)
{
    if (make_absolute(&opts->cache, err, errlen) != 0 ||
        make_absolute(&opts->data, err, errlen) != 0)
        return -1;
    if (opts->n_positionals < 2) {
        cascade_errf(err, errlen, "need at least one .cascade file (or a folder) and a mount point");
        return -1;
    }
    /* A data file that is no regular file is bad input, said before the
     * node starts (a missing one is created later). */
    struct stat sb;
    if (opts->data && stat(opts->data, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        char why[CASCADE_ERRLEN];
        int fd = cascade_open_regular(opts->data, O_RDONLY, 0, NULL, why, sizeof why);
        if (fd >= 0)
            close(fd);   /* it became a regular file meanwhile: fine */
        else {
            cascade_errf(err, errlen, "data=%s", why);
            return -1;
        }
    }
    if (opts->timeout == 0) {
        cascade_errf(err, errlen, "timeout must be at least 1 second");
        return -1;
    }
    if (opts->upload_slots > NODE_MAX_UPLOAD_SLOTS) {
        cascade_errf(err, errlen, "upload_slots=%u: give 1 to %d", opts->upload_slots,
                     NODE_MAX_UPLOAD_SLOTS);
        return -1;
    }
    if (opts->readahead > 1u << 20) {
        cascade_errf(err, errlen, "readahead=%u blocks is too large", opts->readahead);
        return -1;
    }
    if (parse_cache_options(opts, err, errlen) != 0)
        return -1;
    return parse_addresses(opts, err, errlen);
}

int fs_options_parse(int argc, char **argv, struct fs_options *opts, struct fuse_args *args,
                     char *err, size_t errlen)
{
    memset(opts, 0, sizeof *opts);
    opts->readahead = FS_DEFAULT_READAHEAD_BLOCKS;
    opts->timeout = FS_DEFAULT_TIMEOUT_S;
    *args = (struct fuse_args)FUSE_ARGS_INIT(argc, argv);
    if (fuse_opt_parse(args, opts, fs_opt_table, fs_opt_proc) != 0) {
        cascade_errf(err, errlen, "cannot parse the options");
        return -1;
    }
    if (opts->show_help || opts->show_version)
        return 0;
    if (check_options(opts, err, errlen) != 0)
        return -1;
    /* libfuse takes the mount point as its one positional argument. */
    if (fuse_opt_add_arg(args, opts->positionals[opts->n_positionals - 1]) != 0) {
        cascade_errf(err, errlen, "out of memory");
        return -1;
    }
    return 0;
}

void fs_options_free(struct fs_options *opts)
{
    free(opts->tracker);
    free(opts->listen);
    free(opts->cache);
    free(opts->data);
    free(opts->cache_max_arg);
    free(opts->verify_arg);
    for (size_t i = 0; i < opts->n_positionals; i++)
        free(opts->positionals[i]);
    free(opts->positionals);
    memset(opts, 0, sizeof *opts);
}

/* cascadefs: mount .cascade files as lazily fetched read-only files.
 *
 *   cascadefs file.cascade /mnt/x                # background, like sshfs
 *   cascadefs -f -o tracker=127.0.0.1:8888 dir/ /mnt/x
 *   fusermount3 -u /mnt/x                        # or SIGTERM
 *
 * From /etc/fstab (mount.fuse3 runs `cascadefs SOURCE MOUNTPOINT -o OPTS`):
 *   /srv/x.cascade  /mnt/x  fuse.cascadefs  ro,tracker=127.0.0.1:8888,allow_other  0 0
 *
 * The order matters, so main() sets up in steps and tears down through one
 * cleanup ladder:
 *   1. parse options and load every .cascade file (bad input: exit 2,
 *      before anything is mounted);
 *   2. fuse_new (FUSE option errors: exit 2);
 *   3. go to the background unless -f/-d: fork, the parent waits on a pipe
 *      for the child's verdict, so `cascadefs ...` returns 0 only once the
 *      mount is there, and 1 with the child's message when it failed;
 *   4. in the (child) process that stays: the peer node (threads, hence
 *      after the fork) with every file added, then fuse_mount;
 *   5. fuse_loop_mt until unmounted or signalled; then unmount and stop the
 *      node (connections closed, every held mark made durable).
 */
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <fuse_lowlevel.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "cascade/log.h"
#include "cascade/util.h"
#include "fs/fs_files.h"
#include "fs/fs_ops.h"
#include "fs/fs_options.h"
#include "fs/fs_services.h"

/* One or two read requests (fs_ops.c asks for 1 MiB, or 512 KiB when it
 * splices): one in flight while the reader consumes the other. */
#define FS_KERNEL_READAHEAD_KIB 1024

/* Pipe to the waiting parent (-1 in the foreground). */
struct daemon_link {
    int fd;
};

static void print_help(const char *prog, struct fuse_args *args)
{
    fs_options_usage(prog, stdout);
    printf("\nFUSE options:\n");
    fuse_cmdline_help();
    fuse_lib_help(args);
}

/* The parent stays only to pass on the child's verdict: an exit code byte,
 * then (on failure) the message the child would have logged. */
static int daemon_wait(int fd)
{
    char buf[CASCADE_ERRLEN + 1];
    size_t got = 0;
    ssize_t n;
    while (got < sizeof buf - 1) {
        n = read(fd, buf + got, sizeof buf - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got == 0) {
        fprintf(stderr, "cascadefs: the mount process ended without a word\n");
        return CASCADE_EXIT_FAIL;
    }
    buf[got] = '\0';
    if (got > 1)
        fprintf(stderr, "cascadefs: %s\n", buf + 1);
    return (unsigned char)buf[0];
}

/* Go to the background: the parent waits for the child's verdict and exits
 * with it; the child carries on in a session of its own, working from "/". */
static int daemon_fork(struct daemon_link *link)
{
    int fds[2];
    if (pipe(fds) != 0) {
        fprintf(stderr, "cascadefs: pipe: %s\n", strerror(errno));
        return -1;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "cascadefs: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid > 0) {
        close(fds[1]);
        _exit(daemon_wait(fds[0]));
    }
    close(fds[0]);
    link->fd = fds[1];
    if (setsid() < 0 || chdir("/") != 0)
        return -1;
    return 0;
}

/* Tell the parent how it went (why, on failure) and, once mounted, let go
 * of the terminal. In the foreground the message goes to the log. */
static void daemon_report(struct daemon_link *link, int code, const char *why)
{
    if (why)
        log_error("%s", why);
    if (link->fd < 0)
        return;
    if (code == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null >= 0) {
            dup2(null, STDIN_FILENO);
            dup2(null, STDOUT_FILENO);
            dup2(null, STDERR_FILENO);
            if (null > STDERR_FILENO)
                close(null);
        }
    }
    char msg[CASCADE_ERRLEN + 1];
    int len = snprintf(msg, sizeof msg, "%c%s", code, why ? why : "");
    if (len < 1 || write(link->fd, msg, (size_t)len < sizeof msg ? (size_t)len : sizeof msg - 1) < 1)
        log_warn("could not report to the starting process");
    close(link->fd);
    link->fd = -1;
}

/* Add subtype/fsname (so `mount` shows fuse.cascadefs) and ro. */
static int add_mount_names(struct fuse_args *args, const struct fs_file *first)
{
    char opt[320];
    snprintf(opt, sizeof opt, "-oro,subtype=cascadefs,fsname=cascadefs:%.200s", first->meta.name);
    /* A comma in a name would split the option list: drop it. */
    for (char *p = opt + strlen("-oro,subtype=cascadefs,fsname="); *p; p++)
        if (*p == ',' || *p == '\\')
            *p = '_';
    return fuse_opt_add_arg(args, opt);
}

static int check_mountpoint(const char *mp)
{
    struct stat sb;
    if (stat(mp, &sb) != 0) {
        fprintf(stderr, "cascadefs: mount point %s: %s\n", mp, strerror(errno));
        return -1;
    }
    if (!S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "cascadefs: mount point %s is not a folder\n", mp);
        return -1;
    }
    return 0;
}

/* Undo mountinfo's escapes (a backslash and three octal digits: "\040"
 * for a space) in place. */
static void mountinfo_unescape(char *s)
{
    char *out = s;
    for (; *s; s++, out++) {
        bool esc = s[0] == '\\';
        for (int i = 1; esc && i <= 3; i++)
            esc = s[i] >= '0' && s[i] <= '7';
        if (esc) {
            *out = (char)((s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0'));
            s += 3;
        } else {
            *out = *s;
        }
    }
    *out = '\0';
}

/* True when /proc/self/mountinfo lists a cascadefs mount exactly at mp
 * (libfuse resolved it with realpath): fields 5 (mount point) and the
 * one after the "-" separator (file system type). */
static bool cascadefs_mounted_at(const char *mp)
{
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    char *line = NULL, *save, *tok;
    size_t cap = 0;
    bool found = false;
    if (!mi)
        return false;
    while (!found && getline(&line, &cap, mi) > 0) {
        tok = strtok_r(line, " \n", &save);
        for (int i = 0; tok && i < 4; i++)
            tok = strtok_r(NULL, " \n", &save);
        if (!tok)
            continue;
        mountinfo_unescape(tok);
        if (strcmp(tok, mp) != 0)
            continue;
        while ((tok = strtok_r(NULL, " \n", &save)) && strcmp(tok, "-") != 0)
            ;
        tok = tok ? strtok_r(NULL, " \n", &save) : NULL;
        found = tok && !strcmp(tok, "fuse.cascadefs");
    }
    free(line);
    fclose(mi);
    return found;
}

/* A second cascadefs on the same mount point would hide the first one
 * (which keeps running, unreachable): refuse unless -o stack. */
static int check_not_stacked(const char *mp, bool stack)
{
    if (stack || !cascadefs_mounted_at(mp))
        return 0;
    fprintf(stderr, "cascadefs: %s already holds a cascadefs mount; unmount it first "
            "(fusermount3 -u %s) or add -o stack to mount on top of it\n", mp, mp);
    return -1;
}

/* The kernel caps a FUSE mount's read-ahead at the system default (often
 * 128 KiB) whatever init asks for; larger requests mean fewer round trips
 * per byte. Raise it through the mount's bdi in sysfs (only root may; best
 * effort). The mount is found in mountinfo by its (resolved) path. */
static void raise_kernel_readahead(const char *mountpoint, unsigned kib)
{
    FILE *mi = fopen("/proc/self/mountinfo", "r");
    if (!mi)
        return;
    char line[4096], mp[4096];
    unsigned maj, min, found_maj = 0, found_min = 0;
    bool found = false;
    while (fgets(line, sizeof line, mi))
        if (sscanf(line, "%*d %*d %u:%u %*s %4095s", &maj, &min, mp) == 3 &&
            !strcmp(mp, mountpoint)) {
            found = true;   /* the last match is the newest mount */
            found_maj = maj;
            found_min = min;
        }
    fclose(mi);
    if (!found)
        return;
    char path[64];
    snprintf(path, sizeof path, "/sys/class/bdi/%u:%u/read_ahead_kb", found_maj, found_min);
    FILE *ra = fopen(path, "w");
    if (!ra) {
        log_debug("cannot raise read-ahead (%s): %s", path, strerror(errno));
        return;
    }
    fprintf(ra, "%u\n", kib);
    if (fclose(ra) != 0)
        log_debug("cannot raise read-ahead (%s): %s", path, strerror(errno));
}

/* ---- stopping on a signal ----
 * SIGTERM, SIGINT and SIGHUP stop the mount, and the exit status is then
 * 0, as after fusermount3 -u. Our handler first wakes every read waiting
 * for a block (it fails with EIO at once instead of waiting for its
 * timeout) and, for a short grace, lets the FUSE loop answer what the
 * kernel still asks (it retries a failed page once): every such read gets
 * EIO too, none is left to be aborted by the unmount. Then SIGALRM hands
 * the signal to libfuse's own handler, which ends the loop. The node's
 * threads start with these signals blocked, so they reach the FUSE loop's
 * thread, as libfuse expects (its workers block every signal). */

#define FS_STOP_GRACE_US 300000

static const int stop_signals[] = {SIGTERM, SIGINT, SIGHUP};
#define N_STOP_SIGNALS (sizeof stop_signals / sizeof stop_signals[0])

/* What the handlers need: main owns these, the handlers only read them. */
static struct peer_node *signal_node;
static struct sigaction fuse_actions[N_STOP_SIGNALS];
static volatile sig_atomic_t stopped_by_signal;

/* Hand sig to libfuse's handler for it (it ends the loop). */
static void fuse_stop(int sig)
{
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        if (stop_signals[i] == sig && fuse_actions[i].sa_handler != SIG_DFL &&
            fuse_actions[i].sa_handler != SIG_IGN)
            fuse_actions[i].sa_handler(sig);
}

static void on_stop_signal(int sig)
{
    if (stopped_by_signal) {   /* asked twice: stop now */
        fuse_stop(sig);
        return;
    }
    stopped_by_signal = sig;
    if (signal_node)
        node_interrupt_from_signal(signal_node);
    struct itimerval grace = {.it_value = {.tv_sec = 0, .tv_usec = FS_STOP_GRACE_US}};
    if (setitimer(ITIMER_REAL, &grace, NULL) != 0)
        fuse_stop(sig);
}

static void on_grace_over(int sig)
{
    (void)sig;
    if (stopped_by_signal)
        fuse_stop(stopped_by_signal);
}

/* Put our handler in front of libfuse's (installed just before). */
static int chain_stop_handlers(struct peer_node *node)
{
    signal_node = node;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sigemptyset(&sa.sa_mask);
    sa.sa_handler = on_stop_signal;
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        if (sigaction(stop_signals[i], NULL, &fuse_actions[i]) != 0 ||
            sigaction(stop_signals[i], &sa, NULL) != 0)
            return -1;
    sa.sa_handler = on_grace_over;
    return sigaction(SIGALRM, &sa, NULL);
}

/* Block (or unblock) the stop signals and SIGALRM in the calling thread. */
static void mask_stop_signals(int how)
{
    sigset_t set;
    sigemptyset(&set);
    for (size_t i = 0; i < N_STOP_SIGNALS; i++)
        sigaddset(&set, stop_signals[i]);
    sigaddset(&set, SIGALRM);
    pthread_sigmask(how, &set, NULL);
}

/* The multithreaded FUSE loop with the user's -o clone_fd, max_threads and
 * max_idle_threads. */
static int run_loop_mt(struct fuse *fuse, const struct fuse_cmdline_opts *cmd)
{
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) {
        log_error("out of memory for the FUSE loop");
        return -1;
    }
    fuse_loop_cfg_set_clone_fd(cfg, (unsigned)cmd->clone_fd);
    /* UINT_MAX: not given, keep libfuse's default (passing it on would only
     * print "Ignoring invalid max threads value"). */
    if (cmd->max_idle_threads != UINT_MAX)
        fuse_loop_cfg_set_idle_threads(cfg, cmd->max_idle_threads);
    if (cmd->max_threads != UINT_MAX)
        fuse_loop_cfg_set_max_threads(cfg, cmd->max_threads);
    int rc = fuse_loop_mt(fuse, cfg);
    fuse_loop_cfg_destroy(cfg);
    return rc;
}

/* Steps 4 and 5: everything after the (optional) fork. */
static int run_mount(struct fuse *fuse, struct fs_mount *m, const struct fs_options *opts,
                     const struct fuse_cmdline_opts *cmd, struct daemon_link *link)
{
    char err[CASCADE_ERRLEN];
    mask_stop_signals(SIG_BLOCK);   /* the node's threads inherit the mask */
    int started = fs_services_start(m, opts, err, sizeof err);
    mask_stop_signals(SIG_UNBLOCK);
    if (started != 0) {
        daemon_report(link, CASCADE_EXIT_FAIL, err);
        return CASCADE_EXIT_FAIL;
    }
    int code = CASCADE_EXIT_FAIL;
    if (fuse_mount(fuse, cmd->mountpoint) != 0) {
        cascade_errf(err, sizeof err, "cannot mount on %s", cmd->mountpoint);
        daemon_report(link, CASCADE_EXIT_FAIL, err);
        goto stop_services;
    }
    raise_kernel_readahead(cmd->mountpoint, FS_KERNEL_READAHEAD_KIB);
    if (fuse_set_signal_handlers(fuse_get_session(fuse)) != 0 ||
        chain_stop_handlers(m->node) != 0) {
        daemon_report(link, CASCADE_EXIT_FAIL, "cannot install signal handlers");
        goto unmount;
    }
    log_info("mounted %zu file%s on %s", m->n_files, m->n_files == 1 ? "" : "s",
             cmd->mountpoint);
    daemon_report(link, 0, NULL);
    int rc = cmd->singlethread ? fuse_loop(fuse) : run_loop_mt(fuse, cmd);
    /* A stop signal is a normal way to end (libfuse reports it as an error). */
    code = rc == 0 || stopped_by_signal ? 0 : CASCADE_EXIT_FAIL;
    if (stopped_by_signal)
        log_info("signal %d: unmounting", (int)stopped_by_signal);
    fuse_remove_signal_handlers(fuse_get_session(fuse));
    signal_node = NULL;
unmount:
    fs_notifier_stop(m);   /* it talks to the kernel through the session: before it closes */
    fuse_unmount(fuse);
stop_services:
    fs_services_stop(m);
    log_info("unmounted %s", cmd->mountpoint);
    return code;
}

int main(int argc, char **argv)
{
    struct fs_options opts;
    struct fuse_args args;
    struct fuse_cmdline_opts cmd;
    struct fs_mount m = { .uid = getuid(), .gid = getgid(), .mount_time = time(NULL) };
    struct daemon_link link = { .fd = -1 };
    struct fuse *fuse = NULL;
    char err[CASCADE_ERRLEN];
    int code = CASCADE_EXIT_USAGE;

    memset(&cmd, 0, sizeof cmd);
    cascade_log_init("cascadefs", CASCADE_LOG_INFO, false);
    if (fs_options_parse(argc, argv, &opts, &args, err, sizeof err) != 0) {
        fprintf(stderr, "cascadefs: %s\n", err);
        fprintf(stderr, "Try '%s --help' for more information.\n", argv[0]);
        goto out_opts;
    }
    if (opts.show_help || opts.show_version) {
        if (opts.show_help)
            print_help(argv[0], &args);
        else
            printf("cascadefs %s (libfuse %s)\n", CASCADEFS_VERSION, fuse_pkgversion());
        code = 0;
        goto out_opts;
    }
    if (fs_files_load(opts.positionals, fs_options_source_count(&opts), &m.files, &m.n_files,
                      err, sizeof err) != 0) {
        fprintf(stderr, "cascadefs: %s\n", err);
        goto out_opts;
    }
    if (opts.data && m.n_files != 1) {
        fprintf(stderr, "cascadefs: data=PATH needs exactly one .cascade file (got %zu)\n",
                m.n_files);
        goto out_files;
    }
    if (fuse_parse_cmdline(&args, &cmd) != 0)
        goto out_files;   /* libfuse printed why */
    if (!cmd.mountpoint) {
        fprintf(stderr, "cascadefs: no mount point given\n");
        goto out_files;
    }
    if (check_mountpoint(cmd.mountpoint) != 0 ||
        check_not_stacked(cmd.mountpoint, opts.stack) != 0 ||
        add_mount_names(&args, &m.files[0]) != 0)
        goto out_files;
    m.mountpoint = cmd.mountpoint;
    m.timeout_ms = (int)(opts.timeout > 86400 ? 86400 : opts.timeout) * 1000;
    m.splice_allowed = !opts.nosplice;
    m.readahead_blocks = opts.readahead;

    fuse = fuse_new(&args, &fs_operations, sizeof fs_operations, &m);
    if (!fuse)
        goto out_files;   /* libfuse printed why */
    if (!cmd.foreground && daemon_fork(&link) != 0) {
        code = CASCADE_EXIT_FAIL;
        goto out_fuse;
    }
    cascade_log_init("cascadefs", cmd.debug ? CASCADE_LOG_DEBUG : CASCADE_LOG_INFO,
                     !cmd.foreground);
    code = run_mount(fuse, &m, &opts, &cmd, &link);

out_fuse:
    fuse_destroy(fuse);
out_files:
    fs_files_free(m.files, m.n_files);
    free(cmd.mountpoint);
out_opts:
    fuse_opt_free_args(&args);
    fs_options_free(&opts);
    return code;
}

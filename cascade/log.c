/* Process-wide logging: see log.h. */
#include "cascade/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>

static const char *log_ident = "cascade";
static _Atomic int log_level = CASCADE_LOG_INFO;
static _Atomic bool log_syslog = false;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

void cascade_log_init(const char *ident, enum cascade_log_level level, bool use_syslog)
{
    log_ident = ident;
    log_level = level;
    log_syslog = use_syslog;
    if (use_syslog)
        openlog(ident, LOG_PID, LOG_DAEMON);
}

bool cascade_log_enabled(enum cascade_log_level level)
{
    return (int)level <= log_level;
}

void cascade_log(enum cascade_log_level level, const char *fmt, ...)
{
    if (!cascade_log_enabled(level))
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_syslog) {
        static const int prio[] = {LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG};
        syslog(prio[level], "%s", msg);
        return;
    }
    static const char *names[] = {"error", "warning", "info", "debug"};
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    localtime_r(&ts.tv_sec, &tm);
    pthread_mutex_lock(&log_lock);
    fprintf(stderr, "%02d:%02d:%02d.%03ld %s: %s: %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
            ts.tv_nsec / 1000000, log_ident, names[level], msg);
    pthread_mutex_unlock(&log_lock);
}

/* Process-wide logging: stderr (foreground) or syslog (daemonised).
 * The only global state in the libraries; set once by a program's main. */
#ifndef CASCADE_LOG_H
#define CASCADE_LOG_H

#include <stdbool.h>

enum cascade_log_level { CASCADE_LOG_ERROR = 0, CASCADE_LOG_WARN, CASCADE_LOG_INFO, CASCADE_LOG_DEBUG };

void cascade_log_init(const char *ident, enum cascade_log_level level, bool use_syslog);
bool cascade_log_enabled(enum cascade_log_level level);
void cascade_log(enum cascade_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define log_error(...) cascade_log(CASCADE_LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  cascade_log(CASCADE_LOG_WARN, __VA_ARGS__)
#define log_info(...)  cascade_log(CASCADE_LOG_INFO, __VA_ARGS__)
#define log_debug(...) cascade_log(CASCADE_LOG_DEBUG, __VA_ARGS__)

#endif

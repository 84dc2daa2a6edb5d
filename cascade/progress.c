/* One-line progress on stderr, redrawn in place with '\r'. */
#include "cascade/progress.h"

#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cascade/util.h"

enum {
    REDRAW_MS = 100,
    DEFAULT_COLUMNS = 80,
    BAR_MIN = 6,               /* narrower than this: no bar at all */
    BAR_MAX = 30,
    TAIL_TYPICAL = 44,         /* room kept for the text after the bar, so the
                                  bar keeps its width as the numbers grow */
    DURATION_MAX_S = 100 * 3600,
};

static unsigned terminal_columns(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
        return ws.ws_col;
    return DEFAULT_COLUMNS;
}

void cascade_progress_init(struct cascade_progress *p, const char *label,
                           uint64_t total, bool bytes, bool force_off)
{
    memset(p, 0, sizeof *p);
    p->label = label ? label : "";
    p->total = total;
    p->bytes = bytes;
    p->enabled = !force_off && isatty(STDERR_FILENO);
    p->columns = p->enabled ? terminal_columns() : DEFAULT_COLUMNS;
    p->start_ms = cascade_now_ms();
}

static void format_amount(const struct cascade_progress *p, uint64_t n, char *out, size_t len)
{
    if (p->bytes)
        cascade_human_bytes(n, out, len);
    else
        snprintf(out, len, "%llu", (unsigned long long)n);
}

/* "7:05" or "1:02:03"; "--:--" past what is worth showing. */
void cascade_progress_format_duration(uint64_t s, char *out, size_t len)
{
    if (s >= DURATION_MAX_S)
        snprintf(out, len, "--:--");
    else if (s >= 3600)
        snprintf(out, len, "%u:%02u:%02u", (unsigned)(s / 3600), (unsigned)(s / 60 % 60),
                 (unsigned)(s % 60));
    else
        snprintf(out, len, "%u:%02u", (unsigned)(s / 60), (unsigned)(s % 60));
}

/* Units per second since the first update; false while unknown. */
static bool rate_per_s(const struct cascade_progress *p, uint64_t now, double *rate)
{
    if (!p->based || now <= p->base_ms || p->done <= p->base_done)
        return false;
    *rate = (double)(p->done - p->base_done) * 1000.0 / (double)(now - p->base_ms);
    return true;
}

/* "  20.1 MiB / 48.0 MiB  250.3 MiB/s  ETA 0:07": everything after the bar. */
static void format_tail(const struct cascade_progress *p, uint64_t now, bool final,
                        char *out, size_t len)
{
    char done[32], total[32], per[32] = "", when[32] = "", t[24];
    format_amount(p, p->done, done, sizeof done);
    format_amount(p, p->total, total, sizeof total);
    double rate;
    bool have_rate = rate_per_s(p, now, &rate);
    if (have_rate && !p->bytes && rate < 10)
        snprintf(per, sizeof per, "  %.1f/s", rate);
    else if (have_rate) {
        format_amount(p, (uint64_t)rate, t, sizeof t);
        snprintf(per, sizeof per, "  %s/s", t);
    }
    if (final) {
        cascade_progress_format_duration((now > p->start_ms ? now - p->start_ms : 0) / 1000, t,
                                         sizeof t);
        snprintf(when, sizeof when, "  in %s", t);
    } else if (have_rate && rate > 0 && p->done < p->total) {
        double eta = (double)(p->total - p->done) / rate + 0.5;
        cascade_progress_format_duration(eta < DURATION_MAX_S ? (uint64_t)eta : DURATION_MAX_S, t,
                                         sizeof t);
        snprintf(when, sizeof when, "  ETA %s", t);
    }
    snprintf(out, len, "  %s / %s%s%s%s%s", done, total, per, when, p->note[0] ? "  " : "",
             p->note);
}

void cascade_progress_format(const struct cascade_progress *p, uint64_t now_ms, bool final,
                             unsigned columns, char *out, size_t outlen)
{
    /* Whole percent, computed without overflowing for huge totals. */
    double frac = p->total ? (double)p->done / (double)p->total : 1.0;
    if (frac > 1.0)
        frac = 1.0;
    char head[96], tail[200], bar[BAR_MAX + 4] = "";
    snprintf(head, sizeof head, "%s %3u%%", p->label, (unsigned)(frac * 100.0));
    format_tail(p, now_ms, final, tail, sizeof tail);
    size_t tail_room = strlen(tail) > TAIL_TYPICAL ? strlen(tail) : TAIL_TYPICAL;
    size_t fixed = strlen(head) + tail_room + 3;   /* " [" and "]" */
    size_t width = columns > fixed + 1 ? columns - 1 - fixed : 0;
    if (width > BAR_MAX)
        width = BAR_MAX;
    if (width >= BAR_MIN) {
        size_t filled = (size_t)(frac * (double)width);
        bar[0] = ' ';
        bar[1] = '[';
        memset(bar + 2, '#', filled);
        memset(bar + 2 + filled, '.', width - filled);
        bar[2 + width] = ']';
        bar[3 + width] = '\0';
    }
    size_t limit = columns > 1 ? columns - 1 : 1;
    snprintf(out, outlen < limit + 1 ? outlen : limit + 1, "%s%s%s", head, bar, tail);
}

static void draw(const struct cascade_progress *p, uint64_t now, bool final)
{
    char line[512];
    cascade_progress_format(p, now, final, p->columns, line, sizeof line);
    fprintf(stderr, "\r%s\033[K", line);
    fflush(stderr);
}

void cascade_progress_set_note(struct cascade_progress *p, const char *note)
{
    snprintf(p->note, sizeof p->note, "%s", note ? note : "");
}

void cascade_progress_update(struct cascade_progress *p, uint64_t done)
{
    uint64_t now = cascade_now_ms();
    p->done = done;
    if (!p->based) {
        p->based = true;
        p->base_done = done;
        p->base_ms = now;
    }
    if (!p->enabled)
        return;
    if (p->last_draw_ms && now - p->last_draw_ms < REDRAW_MS)
        return;
    p->last_draw_ms = now;
    draw(p, now, false);
}

void cascade_progress_finish(struct cascade_progress *p)
{
    if (!p->enabled)
        return;
    draw(p, cascade_now_ms(), true);
    fputc('\n', stderr);
    fflush(stderr);
    p->enabled = false;   /* a second finish (on an error path) adds no line */
}

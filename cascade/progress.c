/* One-line progress on stderr, redrawn in place with '\r'. */
#include "cascade/progress.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cascade/util.h"

enum { REDRAW_MS = 100 };

void cascade_progress_init(struct cascade_progress *p, const char *label,
                           uint64_t total, bool bytes, bool force_off)
{
    memset(p, 0, sizeof *p);
    p->label = label ? label : "";
    p->total = total;
    p->bytes = bytes;
    p->enabled = !force_off && isatty(STDERR_FILENO);
    p->start_ms = cascade_now_ms();
}

static void format_amount(const struct cascade_progress *p, uint64_t n, char *out, size_t len)
{
    if (p->bytes)
        cascade_human_bytes(n, out, len);
    else
        snprintf(out, len, "%llu", (unsigned long long)n);
}

static void draw(const struct cascade_progress *p, uint64_t now)
{
    char done[32], total[32], rate[32];
    format_amount(p, p->done, done, sizeof done);
    format_amount(p, p->total, total, sizeof total);
    uint64_t elapsed = now > p->start_ms ? now - p->start_ms : 0;
    /* Whole percent, computed without overflowing for huge totals. */
    unsigned pct = p->total ? (unsigned)((double)p->done * 100.0 / (double)p->total) : 100;
    if (pct > 100)
        pct = 100;
    if (elapsed > 0) {
        char per[24];
        format_amount(p, (uint64_t)((double)p->done * 1000.0 / (double)elapsed), per, sizeof per);
        snprintf(rate, sizeof rate, "%s/s", per);
    } else {
        snprintf(rate, sizeof rate, "-");
    }
    fprintf(stderr, "\r%s %3u%% %s / %s  %s\033[K", p->label, pct, done, total, rate);
    fflush(stderr);
}

void cascade_progress_update(struct cascade_progress *p, uint64_t done)
{
    p->done = done;
    if (!p->enabled)
        return;
    uint64_t now = cascade_now_ms();
    if (p->last_draw_ms && now - p->last_draw_ms < REDRAW_MS)
        return;
    p->last_draw_ms = now;
    draw(p, now);
}

void cascade_progress_finish(struct cascade_progress *p)
{
    if (!p->enabled)
        return;
    draw(p, cascade_now_ms());
    fputc('\n', stderr);
    fflush(stderr);
}

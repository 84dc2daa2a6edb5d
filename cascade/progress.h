/* A one-line progress display for long command-line work, drawn on stderr
 * only when stderr is a terminal (and never more than ~10 times a second). */
#ifndef CASCADE_PROGRESS_H
#define CASCADE_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct cascade_progress {
    const char *label;     /* e.g. "hashing" */
    uint64_t total;        /* units of work (bytes or blocks) */
    uint64_t done;
    bool bytes;            /* show done/total as byte sizes */
    bool enabled;          /* false: draw nothing */
    uint64_t last_draw_ms;
    uint64_t start_ms;
};

/* enabled = isatty(2) unless force_off. */
void cascade_progress_init(struct cascade_progress *p, const char *label,
                           uint64_t total, bool bytes, bool force_off);
void cascade_progress_update(struct cascade_progress *p, uint64_t done);
/* Draws the final state and a newline (when enabled). */
void cascade_progress_finish(struct cascade_progress *p);

#endif

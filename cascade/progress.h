/* A one-line progress display for long command-line work, drawn on stderr
 * only when stderr is a terminal (and never more than ~10 times a second):
 *
 *   hashing  42% [#######.........]  20.1 MiB / 48.0 MiB  250.3 MiB/s  ETA 0:07
 *
 * (with an optional note at the end, such as "3 peers"),
 * and, once finished, the same line with the time it took ("in 0:12")
 * instead of the ETA. Byte amounts and rates are in binary units (KiB, MiB,
 * GiB, as cascade_human_bytes). When stderr is not a terminal nothing is
 * drawn at all: the program's own summary is the only output.
 *
 * The rate counts only work done from the first update on, so a job that
 * resumes (whose first update already reports earlier work) shows the rate
 * of this run. Not thread-safe: one thread updates a display. */
#ifndef CASCADE_PROGRESS_H
#define CASCADE_PROGRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct cascade_progress {
    const char *label;     /* e.g. "hashing" */
    uint64_t total;        /* units of work (bytes or blocks) */
    uint64_t done;
    bool bytes;            /* show amounts and rate as byte sizes */
    bool enabled;          /* false: draw nothing */
    uint64_t last_draw_ms;
    uint64_t start_ms;
    bool based;            /* base_* hold the first update */
    uint64_t base_done, base_ms;
    unsigned columns;      /* terminal width when enabled (80 if unknown) */
    char note[32];         /* shown last ("3 peers"); "" for none */
};

/* enabled = isatty(2) unless force_off. */
void cascade_progress_init(struct cascade_progress *p, const char *label,
                           uint64_t total, bool bytes, bool force_off);
void cascade_progress_update(struct cascade_progress *p, uint64_t done);
/* Text shown at the end of the line from the next draw on (at most 31
 * bytes kept), such as "3 peers"; NULL or "" for none. */
void cascade_progress_set_note(struct cascade_progress *p, const char *note);
/* Draws the final state and a newline (when enabled), then stops drawing:
 * a second finish, or an update after it, draws nothing. */
void cascade_progress_finish(struct cascade_progress *p);

/* The line for the state of p at now_ms (on the cascade_now_ms clock),
 * at most columns - 1 characters (the bar shrinks, then goes, to fit), into
 * out (NUL-terminated; outlen >= 1). final: show the time taken instead of
 * the ETA. Pure: draws nothing; what update and finish print. */
void cascade_progress_format(const struct cascade_progress *p, uint64_t now_ms, bool final,
                             unsigned columns, char *out, size_t outlen);

/* A duration as the line shows it: "7:05", "1:02:03", or "--:--" from
 * 100 hours on. */
void cascade_progress_format_duration(uint64_t seconds, char *out, size_t outlen);

#endif

/* Unit tests for cascade/progress.c: the line it draws (percent, bar,
 * binary units, rate since the first update, ETA, time taken) and that it
 * fits the terminal. The clock is set by hand, so nothing here is timed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cascade/progress.h"

#define MiB (1024ull * 1024)

/* A display that started at t = 1 s and first heard of work at base. */
static struct cascade_progress at(uint64_t total, bool bytes, uint64_t base_done,
                                  uint64_t done)
{
    struct cascade_progress p;
    cascade_progress_init(&p, "hashing", total, bytes, true);
    p.start_ms = 1000;
    p.based = true;
    p.base_ms = 1000;
    p.base_done = base_done;
    p.done = done;
    return p;
}

static void assert_has(const char *line, const char *want)
{
    if (!strstr(line, want))
        fail_msg("'%s' not in '%s'", want, line);
}

static void test_half_way(void **state)
{
    (void)state;
    struct cascade_progress p = at(100 * MiB, true, 0, 50 * MiB);
    char line[256];
    cascade_progress_format(&p, 11000, false, 200, line, sizeof line);
    assert_has(line, "hashing  50% [###############...............]");
    assert_has(line, "50.0 MiB / 100.0 MiB");
    assert_has(line, "5.0 MiB/s");
    assert_has(line, "ETA 0:10");
    assert_null(strstr(line, " in "));
}

static void test_final_line_shows_time_taken(void **state)
{
    (void)state;
    struct cascade_progress p = at(100 * MiB, true, 0, 100 * MiB);
    char line[256];
    cascade_progress_format(&p, 76000, true, 200, line, sizeof line);
    assert_has(line, "100% [##############################]");
    assert_has(line, "in 1:15");
    assert_null(strstr(line, "ETA"));
}

/* A resumed job reports its earlier work at the first update: the rate
 * and ETA count only what this run did. */
static void test_rate_counts_from_first_update(void **state)
{
    (void)state;
    struct cascade_progress p = at(100 * MiB, true, 40 * MiB, 50 * MiB);
    char line[256];
    cascade_progress_format(&p, 11000, false, 200, line, sizeof line);
    assert_has(line, "1.0 MiB/s");
    assert_has(line, "ETA 0:50");
}

static void test_no_rate_before_progress(void **state)
{
    (void)state;
    struct cascade_progress p;
    cascade_progress_init(&p, "verifying", 10 * MiB, true, true);
    char line[256];
    cascade_progress_format(&p, p.start_ms + 5000, false, 200, line, sizeof line);
    assert_has(line, "verifying   0%");
    assert_has(line, "0 B / 10.0 MiB");
    assert_null(strstr(line, "/s"));
    assert_null(strstr(line, "ETA"));
}

static void test_counts_and_long_eta(void **state)
{
    (void)state;
    struct cascade_progress p = at(100000, false, 0, 10);
    char line[256];
    cascade_progress_format(&p, 11000, false, 200, line, sizeof line);
    assert_has(line, "  10 / 100000  1.0/s  ETA 27:46:30");
    p.done = 1;
    p.total = UINT64_MAX;
    cascade_progress_format(&p, 11000, false, 200, line, sizeof line);
    assert_has(line, "  1 / 18446744073709551615  0.1/s  ETA --:--");
}

/* The line never reaches the last column (that would wrap and break the
 * redraw): the bar shrinks, then goes. */
static void test_fits_the_terminal(void **state)
{
    (void)state;
    struct cascade_progress p = at(100 * MiB, true, 0, 50 * MiB);
    char line[256];
    for (unsigned cols = 1; cols < 120; cols++) {
        cascade_progress_format(&p, 11000, false, cols, line, sizeof line);
        assert_true(strlen(line) <= (cols > 1 ? cols - 1 : 1));
    }
    cascade_progress_format(&p, 11000, false, 80, line, sizeof line);
    assert_has(line, "[#");
    cascade_progress_format(&p, 11000, false, 60, line, sizeof line);
    assert_null(strchr(line, '['));
    assert_has(line, "hashing  50%  50.0 MiB / 100.0 MiB");
}

/* A note (get's peers) goes last, and a typical download line still has
 * its bar on 80 columns. */
static void test_note_last(void **state)
{
    (void)state;
    struct cascade_progress p = at(700 * 1024, true, 0, 320 * 1024);
    p.label = "fetching";
    cascade_progress_set_note(&p, "1 peer");
    char line[256];
    cascade_progress_format(&p, 3000, false, 80, line, sizeof line);
    assert_has(line, "fetching  45% [");
    assert_has(line, "]  320.0 KiB / 700.0 KiB  160.0 KiB/s  ETA 0:02  1 peer");
    assert_int_equal(line[strlen(line) - 1], 'r');
    cascade_progress_format(&p, 3000, true, 80, line, sizeof line);
    assert_has(line, "  in 0:02  1 peer");
    cascade_progress_set_note(&p, NULL);
    cascade_progress_format(&p, 3000, false, 200, line, sizeof line);
    assert_has(line, "ETA 0:02");
    assert_int_equal(line[strlen(line) - 1], '2');
    cascade_progress_set_note(&p, "a note far longer than what is kept of it, cut");
    assert_int_equal(strlen(p.note), sizeof p.note - 1);
}

static void test_total_zero_is_done(void **state)
{
    (void)state;
    struct cascade_progress p = at(0, true, 0, 0);
    char line[256];
    cascade_progress_format(&p, 1000, true, 100, line, sizeof line);
    assert_has(line, "100%");
    assert_has(line, "0 B / 0 B");
}

/* Off (or not a terminal): updates keep the count and the base, draw nothing. */
static void test_update_when_off(void **state)
{
    (void)state;
    struct cascade_progress p;
    cascade_progress_init(&p, "x", 100, false, true);
    assert_false(p.enabled);
    cascade_progress_update(&p, 30);
    cascade_progress_update(&p, 60);
    assert_true(p.based);
    assert_int_equal(p.base_done, 30);
    assert_int_equal(p.done, 60);
    assert_int_equal(p.last_draw_ms, 0);
    cascade_progress_finish(&p);
}

/* Drawn on a stream (stderr pointed at a file): one final line, and a
 * second finish adds nothing. */
static void test_finish_draws_once(void **state)
{
    (void)state;
    FILE *f = tmpfile();
    assert_non_null(f);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    assert_true(saved >= 0);
    assert_true(dup2(fileno(f), STDERR_FILENO) >= 0);
    struct cascade_progress p = at(4 * MiB, true, 0, 0);
    p.enabled = true;
    p.columns = 100;
    cascade_progress_update(&p, 4 * MiB);
    cascade_progress_finish(&p);
    cascade_progress_finish(&p);
    cascade_progress_update(&p, 4 * MiB);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    char text[1024];
    rewind(f);
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    assert_non_null(strstr(text, "\rhashing 100% ["));
    assert_non_null(strstr(text, "4.0 MiB / 4.0 MiB"));
    assert_non_null(strstr(text, " in "));
    assert_non_null(strchr(text, '\n'));
    assert_null(strchr(strchr(text, '\n') + 1, '\r'));   /* nothing after the line */
    assert_int_equal(text[n - 1], '\n');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_half_way),
        cmocka_unit_test(test_final_line_shows_time_taken),
        cmocka_unit_test(test_rate_counts_from_first_update),
        cmocka_unit_test(test_no_rate_before_progress),
        cmocka_unit_test(test_counts_and_long_eta),
        cmocka_unit_test(test_fits_the_terminal),
        cmocka_unit_test(test_note_last),
        cmocka_unit_test(test_total_zero_is_done),
        cmocka_unit_test(test_update_when_off),
        cmocka_unit_test(test_finish_draws_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* Unit tests for the source's spreading (net/first_copy.c): a block that
 * went out is held back while others wait, for a hold and no longer; with
 * nobody else waiting everything is served; the first round is said once
 * its last block goes out; a table whose clock ran out starts afresh. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "net/first_copy.h"

#define T0 1000000u   /* any start: the table keeps its own clock */

static void test_held_back_only_within_hold_while_others_wait(void **state)
{
    (void)state;
    struct first_copy fc;
    first_copy_init(&fc, 4);
    bool round = false;
    assert_false(first_copy_hold_back(&fc, 2, true, T0, &round));          /* never sent */
    assert_true(first_copy_hold_back(&fc, 2, true, T0 + 100, &round));     /* just sent */
    assert_true(first_copy_hold_back(&fc, 2, true, T0 + FIRST_COPY_HOLD_MS - 200, &round));
    assert_false(first_copy_hold_back(&fc, 2, false, T0 + 100, &round));   /* nobody else waits */
    /* That copy re-armed the hold from T0 + 100 on. */
    assert_true(first_copy_hold_back(&fc, 2, true, T0 + 300, &round));
    assert_false(first_copy_hold_back(&fc, 2, true, T0 + 100 + FIRST_COPY_HOLD_MS, &round));
    assert_false(first_copy_hold_back(&fc, 1, true, T0 + 300, &round));    /* another block */
    assert_false(round);
    assert_int_equal(fc.given_count, 2);
    first_copy_free(&fc);
}

static void test_round_done_said_once(void **state)
{
    (void)state;
    struct first_copy fc;
    first_copy_init(&fc, 3);
    bool round = false;
    for (uint64_t b = 0; b < 2; b++)
        assert_false(first_copy_hold_back(&fc, b, true, T0, &round));
    assert_false(round);
    assert_true(first_copy_hold_back(&fc, 0, true, T0, &round));   /* held: not a first copy */
    assert_false(round);
    assert_false(first_copy_hold_back(&fc, 2, true, T0, &round));
    assert_true(round);
    round = false;
    assert_false(first_copy_hold_back(&fc, 2, true, T0 + FIRST_COPY_HOLD_MS, &round));
    assert_false(round);
    assert_true(fc.round_done);
    first_copy_free(&fc);
}

static void test_out_of_range_and_empty(void **state)
{
    (void)state;
    struct first_copy fc;
    first_copy_init(&fc, 0);
    bool round = false;
    assert_false(first_copy_hold_back(&fc, 0, true, T0, &round));
    assert_null(fc.given_at);
    first_copy_init(&fc, 2);
    assert_false(first_copy_hold_back(&fc, 5, true, T0, &round));
    assert_null(fc.given_at);   /* nothing allocated for a request it cannot answer */
    first_copy_free(&fc);
    first_copy_free(&fc);       /* twice is fine */
}

static void test_clock_runs_out_and_starts_afresh(void **state)
{
    (void)state;
    struct first_copy fc;
    first_copy_init(&fc, 2);
    bool round = false;
    assert_false(first_copy_hold_back(&fc, 0, true, T0, &round));
    uint64_t late = T0 + 100ull * 70000;   /* past 65535 ticks */
    assert_false(first_copy_hold_back(&fc, 1, true, late, &round));
    assert_true(first_copy_hold_back(&fc, 1, true, late + 100, &round));   /* the new clock holds */
    assert_false(first_copy_hold_back(&fc, 0, true, late + 100, &round));  /* the old copy is gone */
    first_copy_free(&fc);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_held_back_only_within_hold_while_others_wait),
        cmocka_unit_test(test_round_done_said_once),
        cmocka_unit_test(test_out_of_range_and_empty),
        cmocka_unit_test(test_clock_runs_out_and_starts_afresh),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}

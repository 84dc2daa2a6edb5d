/* Wire format against tests/vectors/wire-examples.txt (PROTOCOL.md 2-3)
 * and every decode error path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cascade/util.h"
#include "net/wire.h"

#define MAX_EXAMPLES 8
struct example {
    uint8_t bytes[256];
    size_t len;
};
static struct example examples[MAX_EXAMPLES];
static size_t n_examples;

/* Loads the hex lines (not comments) of wire-examples.txt, in order:
 * 0 tracker request, 1 tracker answer, 2 peer request, 3 peer answer,
 * 4 peer error answer. */
static int load_examples(void **state)
{
    (void)state;
    const char *dir = getenv("CASCADE_VECTORS");
    char path[4096];
    snprintf(path, sizeof path, "%s/wire-examples.txt", dir ? dir : "tests/vectors");
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cannot open %s\n", path);
        return -1;
    }
    char line[1024];
    while (fgets(line, sizeof line, f) && n_examples < MAX_EXAMPLES) {
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0')
            continue;
        struct example *e = &examples[n_examples++];
        e->len = strlen(line) / 2;
        if (e->len > sizeof e->bytes || cascade_unhex(line, e->bytes, e->len) < 0) {
            fclose(f);
            return -1;
        }
    }
    fclose(f);
    return n_examples == 5 ? 0 : -1;
}

static const char *spec1000_hash_hex =
    "7cd633b867fe7a2d0596fed27622050bbd955340ba62e20ac949205ebfda524f";

static void tracker_request_matches_vector(void **state)
{
    (void)state;
    struct wire_tracker_request req = {.command = WIRE_CMD_SUBSCRIBE,
                                       .ip = 0x7f000001, .port = 7777};
    assert_int_equal(cascade_unhex(spec1000_hash_hex, req.hash, 32), 0);
    uint8_t out[WIRE_TRACKER_REQUEST_LEN];
    wire_encode_tracker_request(&req, out);
    assert_int_equal(examples[0].len, WIRE_TRACKER_REQUEST_LEN);
    assert_memory_equal(out, examples[0].bytes, WIRE_TRACKER_REQUEST_LEN);

    struct wire_tracker_request back;
    char err[CASCADE_ERRLEN];
    assert_int_equal(wire_decode_tracker_request(examples[0].bytes, &back, err, sizeof err), 0);
    assert_int_equal(back.command, WIRE_CMD_SUBSCRIBE);
    assert_int_equal(back.ip, 0x7f000001);
    assert_int_equal(back.port, 7777);
    assert_memory_equal(back.hash, req.hash, 32);
}

static void tracker_answer_matches_vector(void **state)
{
    (void)state;
    const struct example *e = &examples[1];
    assert_int_equal(e->len, WIRE_TRACKER_ANSWER_HEADER_LEN + WIRE_PEER_RECORD_LEN);
    uint8_t status;
    uint32_t len;
    wire_decode_tracker_answer_header(e->bytes, &status, &len);
    assert_int_equal(status, 0);
    assert_int_equal(len, 12);
    struct wire_peer_record rec;
    wire_decode_peer_record(e->bytes + 5, &rec);
    assert_int_equal(rec.ip, 0x7f000001);
    assert_int_equal(rec.port, 6666);
    assert_int_equal(rec.last_seen, 1700000000u);
    assert_int_equal(rec.good, 0);

    uint8_t out[17];
    wire_encode_tracker_answer_header(0, 12, out);
    wire_encode_peer_record(&rec, out + 5);
    assert_memory_equal(out, e->bytes, sizeof out);
}

static void peer_request_matches_vector(void **state)
{
    (void)state;
    struct wire_peer_request req = {.block = 15};
    assert_int_equal(cascade_unhex(spec1000_hash_hex, req.hash, 32), 0);
    uint8_t out[WIRE_PEER_REQUEST_LEN];
    wire_encode_peer_request(&req, out);
    assert_int_equal(examples[2].len, WIRE_PEER_REQUEST_LEN);
    assert_memory_equal(out, examples[2].bytes, WIRE_PEER_REQUEST_LEN);

    struct wire_peer_request back;
    assert_int_equal(wire_decode_peer_request(examples[2].bytes, &back, NULL, 0), 0);
    assert_int_equal(back.block, 15);
    assert_memory_equal(back.hash, req.hash, 32);
}

static void peer_answers_match_vectors(void **state)
{
    (void)state;
    uint8_t status;
    uint64_t len;
    wire_decode_peer_answer_header(examples[3].bytes, &status, &len);
    assert_int_equal(status, WIRE_STATUS_OK);
    assert_int_equal(len, 40);
    assert_int_equal(examples[3].len, 9 + 40);
    /* spec1000.bin holds byte i % 251 at offset i; block 15 starts at 960. */
    for (size_t i = 0; i < 40; i++)
        assert_int_equal(examples[3].bytes[9 + i], (960 + i) % 251);

    wire_decode_peer_answer_header(examples[4].bytes, &status, &len);
    assert_int_equal(status, WIRE_STATUS_NOT_PRESENT);
    assert_int_equal(len, examples[4].len - 9);
    assert_memory_equal(examples[4].bytes + 9, "Block not present", len);

    uint8_t out[9];
    wire_encode_peer_answer_header(WIRE_STATUS_NOT_PRESENT, len, out);
    assert_memory_equal(out, examples[4].bytes, 9);
}

static void tracker_request_errors(void **state)
{
    (void)state;
    uint8_t buf[WIRE_TRACKER_REQUEST_LEN];
    struct wire_tracker_request req;
    char err[CASCADE_ERRLEN];
    struct { size_t off; uint8_t value; const char *says; } cases[] = {
        {0, 'X', "magic"},        /* magic */
        {7, 2, "version"},        /* version 2 */
        {11, 3, "command"},       /* command 3 */
        {11, 0, "command"},       /* command 0 */
        {15, 37, "length"},       /* body length 37 */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        memcpy(buf, examples[0].bytes, sizeof buf);
        buf[cases[i].off] = cases[i].value;
        err[0] = '\0';
        assert_int_equal(wire_decode_tracker_request(buf, &req, err, sizeof err), -1);
        assert_non_null(strstr(err, cases[i].says));
    }
}

static void peer_request_bad_magic(void **state)
{
    (void)state;
    uint8_t buf[WIRE_PEER_REQUEST_LEN];
    memcpy(buf, examples[2].bytes, sizeof buf);
    buf[7] = '2';
    struct wire_peer_request req;
    char err[CASCADE_ERRLEN] = "";
    assert_int_equal(wire_decode_peer_request(buf, &req, err, sizeof err), -1);
    assert_non_null(strstr(err, "magic"));
}

static void peer_record_good_flag_and_reserved(void **state)
{
    (void)state;
    struct wire_peer_record rec = {.ip = 0x0a000002, .port = 65535,
                                   .last_seen = 0xfffffffe, .good = 1}, back;
    uint8_t out[WIRE_PEER_RECORD_LEN];
    memset(out, 0xaa, sizeof out);
    wire_encode_peer_record(&rec, out);
    assert_int_equal(out[10], 1);
    assert_int_equal(out[11], 0);
    wire_decode_peer_record(out, &back);
    assert_int_equal(back.ip, rec.ip);
    assert_int_equal(back.port, rec.port);
    assert_int_equal(back.last_seen, rec.last_seen);
    assert_int_equal(back.good, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tracker_request_matches_vector),
        cmocka_unit_test(tracker_answer_matches_vector),
        cmocka_unit_test(peer_request_matches_vector),
        cmocka_unit_test(peer_answers_match_vectors),
        cmocka_unit_test(tracker_request_errors),
        cmocka_unit_test(peer_request_bad_magic),
        cmocka_unit_test(peer_record_good_flag_and_reserved),
    };
    return cmocka_run_group_tests(tests, load_examples, NULL);
}

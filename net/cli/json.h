/* JSON output for the programs' --json modes (`cascade info --json`,
 * `cascade status --json`) and the control socket's answers: a
 * writer that puts commas and quotes where they belong, so a command only
 * says which keys and values it has.
 *
 *   struct json_writer j;
 *   json_begin(&j, stdout);
 *   json_object_begin(&j, NULL);
 *   json_string(&j, "name", name);
 *   json_u64(&j, "size", size);
 *   json_object_end(&j);
 *   json_end(&j);                       // newline; 0, or -1 on a write error
 *
 * prints {"name":"movie.mkv","size":1234} and a newline. Inside an object
 * every value needs a key; inside an array (or at the top) the key is NULL.
 * Strings are written as valid UTF-8 JSON whatever bytes they hold: '"',
 * '\' and control characters are escaped, a byte that is not part of a
 * valid UTF-8 sequence becomes U+FFFD. Integers are exact decimal (readers
 * that use doubles, such as JavaScript, lose precision above 2^53).
 * Nesting deeper than JSON_MAX_DEPTH is a programming error: json_end then
 * fails. Not thread-safe; one writer per stream. */
#ifndef NET_CLI_JSON_H
#define NET_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 8

struct json_writer {
    FILE *out;
    unsigned depth;
    bool first[JSON_MAX_DEPTH + 1];   /* nothing written yet at this level */
    bool broken;                      /* nesting was misused */
};

void json_begin(struct json_writer *j, FILE *out);
/* Ends the line and flushes: 0, or -1 when writing failed or the nesting
 * was misused (something left open, too deep, closed too often). */
int json_end(struct json_writer *j);

void json_object_begin(struct json_writer *j, const char *key);
void json_object_end(struct json_writer *j);
void json_array_begin(struct json_writer *j, const char *key);
void json_array_end(struct json_writer *j);

/* A NULL value is written as null. */
void json_string(struct json_writer *j, const char *key, const char *value);
void json_u64(struct json_writer *j, const char *key, uint64_t value);
void json_bool(struct json_writer *j, const char *key, bool value);
void json_null(struct json_writer *j, const char *key);
/* A value already in JSON form (a number token read by json_read.h),
 * written as it is: the caller vouches that it is one valid JSON value. */
void json_raw(struct json_writer *j, const char *key, const char *json);

/* The quoted, escaped form of s alone, as described above. */
void json_write_quoted(FILE *out, const char *s);

#endif

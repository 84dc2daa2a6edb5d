/* JSON reader: parses a whole JSON text (RFC 8259) into a tree, for the
 * control socket's requests and answers (net/control.h) and what
 * `cascade status` does with them.
 *
 *   struct json_value v;
 *   if (json_parse(text, len, &v, err, sizeof err) == 0) {
 *       const struct json_value *files = json_member(&v, "files");
 *       ...
 *       json_value_free(&v);
 *   }
 *
 * Strict: one value and only whitespace around it, no trailing commas, no
 * comments, no leading zeros, strings without raw control characters.
 * Escapes (\uXXXX with surrogate pairs too) become UTF-8; "\u0000" is
 * refused (strings are NUL-terminated here). Other bytes of strings are
 * kept as they are. Nesting deeper than JSON_READ_MAX_DEPTH is refused, so
 * hostile input cannot exhaust the stack. A number keeps its text, so it is
 * written back exactly (json_value_write), and is also read as a double
 * and, when it is a non-negative integer that fits, as a uint64_t.
 * Not thread-safe per tree; separate trees are independent. */
#ifndef NET_CLI_JSON_READ_H
#define NET_CLI_JSON_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/cli/json.h"

#define JSON_READ_MAX_DEPTH 32

enum json_type {
    JSON_NULL,
    JSON_BOOL,
    JSON_NUMBER,
    JSON_STRING,
    JSON_ARRAY,
    JSON_OBJECT,
};

struct json_value {
    enum json_type type;
    bool boolean;                /* JSON_BOOL */
    char *text;                  /* JSON_STRING: the string; JSON_NUMBER: its token */
    double number;               /* JSON_NUMBER */
    bool is_u64;                 /* JSON_NUMBER: a non-negative integer that fits */
    uint64_t u64;
    size_t n;                    /* JSON_ARRAY items, JSON_OBJECT members */
    struct json_value *items;    /* array items, or object values (in order) */
    char **keys;                 /* JSON_OBJECT: the key of each value */
};

/* Parse len bytes of text into *out. 0, or -1 with a message naming the
 * byte offset of the problem (out is then empty: JSON_NULL, nothing to
 * free, though json_value_free is harmless). */
int json_parse(const char *text, size_t len, struct json_value *out, char *err, size_t errlen);
/* Free what v holds (not v itself). */
void json_value_free(struct json_value *v);

/* The value of key in object obj (the first one, if repeated); NULL when
 * obj is NULL or not an object, or has no such key. */
const struct json_value *json_member(const struct json_value *obj, const char *key);
/* The same, typed: the string (NULL unless a string), the number (false
 * unless a non-negative integer that fits). */
const char *json_member_string(const struct json_value *obj, const char *key);
bool json_member_u64(const struct json_value *obj, const char *key, uint64_t *out);

/* Write v back with the writer (under key inside an object, NULL in an
 * array or at the top): the same JSON, numbers exactly as read. */
void json_value_write(struct json_writer *j, const char *key, const struct json_value *v);

#endif

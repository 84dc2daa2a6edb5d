/* JSON reader: see json_read.h. A recursive-descent parser over a byte
 * range; every value it builds is freed on the first error. */
#include "net/cli/json_read.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cascade/util.h"

struct json_parser {
    const char *s;
    size_t len, pos;
    int depth;
    char *err;
    size_t errlen;
    bool failed;
};

static int parse_value(struct json_parser *p, struct json_value *out);

static int fail_at(struct json_parser *p, const char *what)
{
    if (!p->failed)
        cascade_errf(p->err, p->errlen, "bad JSON at byte %zu: %s", p->pos, what);
    p->failed = true;
    return -1;
}

static void skip_space(struct json_parser *p)
{
    while (p->pos < p->len && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t' ||
                               p->s[p->pos] == '\n' || p->s[p->pos] == '\r'))
        p->pos++;
}

static bool take(struct json_parser *p, char c)
{
    skip_space(p);
    if (p->pos < p->len && p->s[p->pos] == c) {
        p->pos++;
        return true;
    }
    return false;
}

static bool take_word(struct json_parser *p, const char *word)
{
    size_t n = strlen(word);
    if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0)
        return false;
    p->pos += n;
    return true;
}

/* ---- strings ---- */

static int hex4(struct json_parser *p, unsigned *out)
{
    if (p->len - p->pos < 4)
        return fail_at(p, "\\u needs four hex digits");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p->s[p->pos++];
        int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
              : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
        if (d < 0)
            return fail_at(p, "\\u needs four hex digits");
        v = v * 16 + (unsigned)d;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(unsigned cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* After "\u": one code point (a surrogate pair counts as one) into o. */
static int parse_unicode(struct json_parser *p, char *o, size_t *n)
{
    unsigned cp;
    if (hex4(p, &cp) < 0)
        return -1;
    if (cp >= 0xdc00 && cp <= 0xdfff)
        return fail_at(p, "a lone low surrogate");
    if (cp >= 0xd800 && cp <= 0xdbff) {
        unsigned lo;
        if (!take_word(p, "\\u") || hex4(p, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
            return fail_at(p, "a high surrogate without its low half");
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp == 0)
        return fail_at(p, "\\u0000 is not allowed");
    *n = put_utf8(cp, o);
    return 0;
}

/* Bytes from the opening quote at pos to the closing one (or the end). */
static size_t raw_string_len(const struct json_parser *p)
{
    size_t i = p->pos + 1;
    while (i < p->len && p->s[i] != '"')
        i += p->s[i] == '\\' ? 2 : 1;
    return (i < p->len ? i : p->len) - p->pos;
}

/* At the opening quote; the unescaped string, malloc'd. Escapes never
 * grow the text, so the raw length bounds the result. */
static char *parse_string(struct json_parser *p)
{
    char *out = malloc(raw_string_len(p) + 1);
    p->pos++;   /* the quote */
    if (!out) {
        fail_at(p, "out of memory");
        return NULL;
    }
    size_t n = 0;
    while (p->pos < p->len) {
        unsigned char c = (unsigned char)p->s[p->pos];
        if (c == '"') {
            p->pos++;
            out[n] = '\0';
            return out;
        }
        if (c < 0x20)
            break;
        p->pos++;
        if (c != '\\') {
            out[n++] = (char)c;
            continue;
        }
        if (p->pos >= p->len)
            break;
        char e = p->s[p->pos++];
        const char *from = "\"\\/bfnrt", *to = "\"\\/\b\f\n\r\t";
        const char *hit = e ? strchr(from, e) : NULL;
        size_t k;
        if (hit) {
            out[n++] = to[hit - from];
        } else if (e == 'u' && parse_unicode(p, out + n, &k) == 0) {
            n += k;
        } else {
            fail_at(p, "a bad escape in a string");
            free(out);
            return NULL;
        }
    }
    fail_at(p, p->pos >= p->len ? "a string without its closing quote"
                                : "a control character in a string");
    free(out);
    return NULL;
}

/* ---- numbers ---- */

static size_t digits(struct json_parser *p)
{
    size_t n = 0;
    while (p->pos < p->len && p->s[p->pos] >= '0' && p->s[p->pos] <= '9') {
        p->pos++;
        n++;
    }
    return n;
}

static int parse_number(struct json_parser *p, struct json_value *out)
{
    size_t start = p->pos;
    bool negative = p->s[p->pos] == '-', integer = true;
    if (negative)
        p->pos++;
    size_t int_start = p->pos, n = digits(p);
    if (n == 0 || (n > 1 && p->s[int_start] == '0'))
        return fail_at(p, "a bad number");
    if (p->pos < p->len && p->s[p->pos] == '.') {
        p->pos++;
        integer = false;
        if (digits(p) == 0)
            return fail_at(p, "a bad number");
    }
    if (p->pos < p->len && (p->s[p->pos] == 'e' || p->s[p->pos] == 'E')) {
        p->pos++;
        integer = false;
        if (p->pos < p->len && (p->s[p->pos] == '+' || p->s[p->pos] == '-'))
            p->pos++;
        if (digits(p) == 0)
            return fail_at(p, "a bad number");
    }
    out->type = JSON_NUMBER;
    out->text = strndup(p->s + start, p->pos - start);
    if (!out->text)
        return fail_at(p, "out of memory");
    out->number = strtod(out->text, NULL);
    if (integer && !negative) {
        errno = 0;
        unsigned long long v = strtoull(out->text, NULL, 10);
        out->is_u64 = errno == 0;
        out->u64 = v;
    }
    return 0;
}

/* ---- arrays and objects ---- */

/* Room for one more member of v (items, and keys for an object). */
static int grow(struct json_parser *p, struct json_value *v, size_t *cap)
{
    if (v->n < *cap)
        return 0;
    size_t c = *cap ? 2 * *cap : 4;
    struct json_value *items = realloc(v->items, c * sizeof *items);
    if (!items)
        return fail_at(p, "out of memory");
    v->items = items;
    if (v->type == JSON_OBJECT) {
        char **keys = realloc(v->keys, c * sizeof *keys);
        if (!keys)
            return fail_at(p, "out of memory");
        v->keys = keys;
    }
    *cap = c;
    return 0;
}

static int parse_array(struct json_parser *p, struct json_value *out)
{
    out->type = JSON_ARRAY;
    p->pos++;
    if (take(p, ']'))
        return 0;
    size_t cap = 0;
    do {
        if (grow(p, out, &cap) < 0 || parse_value(p, &out->items[out->n]) < 0)
            return -1;
        out->n++;
    } while (take(p, ','));
    return take(p, ']') ? 0 : fail_at(p, "expected ',' or ']'");
}

static int parse_object(struct json_parser *p, struct json_value *out)
{
    out->type = JSON_OBJECT;
    p->pos++;
    if (take(p, '}'))
        return 0;
    size_t cap = 0;
    do {
        skip_space(p);
        if (p->pos >= p->len || p->s[p->pos] != '"')
            return fail_at(p, "expected a key in quotes");
        char *key = parse_string(p);
        if (!key)
            return -1;
        if (!take(p, ':')) {
            free(key);
            return fail_at(p, "expected ':'");
        }
        if (grow(p, out, &cap) < 0) {
            free(key);
            return -1;
        }
        out->keys[out->n] = key;
        if (parse_value(p, &out->items[out->n]) < 0) {
            free(key);
            return -1;
        }
        out->n++;
    } while (take(p, ','));
    return take(p, '}') ? 0 : fail_at(p, "expected ',' or '}'");
}

static int parse_value(struct json_parser *p, struct json_value *out)
{
    memset(out, 0, sizeof *out);
    skip_space(p);
    if (p->pos >= p->len)
        return fail_at(p, "expected a value");
    if (++p->depth > JSON_READ_MAX_DEPTH)
        return fail_at(p, "nested too deeply");
    int rc = 0;
    char c = p->s[p->pos];
    if (c == '{') {
        rc = parse_object(p, out);
    } else if (c == '[') {
        rc = parse_array(p, out);
    } else if (c == '"') {
        out->type = JSON_STRING;
        out->text = parse_string(p);
        rc = out->text ? 0 : -1;
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        rc = parse_number(p, out);
    } else if (take_word(p, "true") || take_word(p, "false")) {
        out->type = JSON_BOOL;
        out->boolean = c == 't';
    } else if (take_word(p, "null")) {
        out->type = JSON_NULL;
    } else {
        rc = fail_at(p, "expected a value");
    }
    p->depth--;
    if (rc < 0)
        json_value_free(out);
    return rc;
}

int json_parse(const char *text, size_t len, struct json_value *out, char *err, size_t errlen)
{
    struct json_parser p = {.s = text, .len = len, .err = err, .errlen = errlen};
    memset(out, 0, sizeof *out);
    if (parse_value(&p, out) < 0)
        return -1;
    skip_space(&p);
    if (p.pos != p.len) {
        json_value_free(out);
        return fail_at(&p, "more after the value");
    }
    return 0;
}

void json_value_free(struct json_value *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++) {
        json_value_free(&v->items[i]);
        if (v->keys)
            free(v->keys[i]);
    }
    free(v->items);
    free(v->keys);
    free(v->text);
    memset(v, 0, sizeof *v);
}

/* ---- reading the tree ---- */

const struct json_value *json_member(const struct json_value *obj, const char *key)
{
    if (!obj || obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->n; i++)
        if (strcmp(obj->keys[i], key) == 0)
            return &obj->items[i];
    return NULL;
}

const char *json_member_string(const struct json_value *obj, const char *key)
{
    const struct json_value *v = json_member(obj, key);
    return v && v->type == JSON_STRING ? v->text : NULL;
}

bool json_member_u64(const struct json_value *obj, const char *key, uint64_t *out)
{
    const struct json_value *v = json_member(obj, key);
    if (!v || v->type != JSON_NUMBER || !v->is_u64)
        return false;
    *out = v->u64;
    return true;
}

void json_value_write(struct json_writer *j, const char *key, const struct json_value *v)
{
    switch (v->type) {
    case JSON_NULL: json_null(j, key); break;
    case JSON_BOOL: json_bool(j, key, v->boolean); break;
    case JSON_NUMBER: json_raw(j, key, v->text); break;
    case JSON_STRING: json_string(j, key, v->text); break;
    case JSON_ARRAY:
        json_array_begin(j, key);
        for (size_t i = 0; i < v->n; i++)
            json_value_write(j, NULL, &v->items[i]);
        json_array_end(j);
        break;
    case JSON_OBJECT:
        json_object_begin(j, key);
        for (size_t i = 0; i < v->n; i++)
            json_value_write(j, v->keys[i], &v->items[i]);
        json_object_end(j);
        break;
    }
}

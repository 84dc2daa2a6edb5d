/* JSON writer: see json.h. */
#include "net/cli/json.h"

#include <string.h>

void json_begin(struct json_writer *j, FILE *out)
{
    memset(j, 0, sizeof *j);
    j->out = out;
    j->first[0] = true;
}

int json_end(struct json_writer *j)
{
    if (j->depth != 0)
        j->broken = true;
    fputc('\n', j->out);
    if (fflush(j->out) != 0 || ferror(j->out))
        return -1;
    return j->broken ? -1 : 0;
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one:
 * no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_len(const unsigned char *s)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t n = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3
             : c >= 0xf0 && c <= 0xf4 ? 4 : 0;
    if (n == 0)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;   /* also stops at the NUL */
    if ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] > 0x9f) ||
        (c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] > 0x8f))
        return 0;
    return n;
}

void json_write_quoted(FILE *out, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    while (*p) {
        size_t n = utf8_len(p);
        if (n == 0) {
            fputs("\\ufffd", out);
            p++;
            continue;
        }
        switch (*p) {
        case '"': fputs("\\\"", out); break;
        case '\\': fputs("\\\\", out); break;
        case '\n': fputs("\\n", out); break;
        case '\r': fputs("\\r", out); break;
        case '\t': fputs("\\t", out); break;
        case '\b': fputs("\\b", out); break;
        case '\f': fputs("\\f", out); break;
        default:
            if (*p < 0x20)
                fprintf(out, "\\u%04x", *p);
            else
                fwrite(p, 1, n, out);
        }
        p += n;
    }
    fputc('"', out);
}

/* The comma and key before a value at the current level. */
static void json_lead(struct json_writer *j, const char *key)
{
    if (!j->first[j->depth])
        fputc(',', j->out);
    j->first[j->depth] = false;
    if (key) {
        json_write_quoted(j->out, key);
        fputc(':', j->out);
    }
}

static void json_open(struct json_writer *j, const char *key, char c)
{
    json_lead(j, key);
    fputc(c, j->out);
    if (j->depth == JSON_MAX_DEPTH) {
        j->broken = true;
        return;
    }
    j->first[++j->depth] = true;
}

static void json_close(struct json_writer *j, char c)
{
    fputc(c, j->out);
    if (j->depth == 0)
        j->broken = true;
    else
        j->depth--;
}

void json_object_begin(struct json_writer *j, const char *key) { json_open(j, key, '{'); }
void json_object_end(struct json_writer *j) { json_close(j, '}'); }
void json_array_begin(struct json_writer *j, const char *key) { json_open(j, key, '['); }
void json_array_end(struct json_writer *j) { json_close(j, ']'); }

void json_string(struct json_writer *j, const char *key, const char *value)
{
    json_lead(j, key);
    if (value)
        json_write_quoted(j->out, value);
    else
        fputs("null", j->out);
}

void json_u64(struct json_writer *j, const char *key, uint64_t value)
{
    json_lead(j, key);
    fprintf(j->out, "%llu", (unsigned long long)value);
}

void json_bool(struct json_writer *j, const char *key, bool value)
{
    json_lead(j, key);
    fputs(value ? "true" : "false", j->out);
}

void json_null(struct json_writer *j, const char *key)
{
    json_lead(j, key);
    fputs("null", j->out);
}

void json_raw(struct json_writer *j, const char *key, const char *json)
{
    json_lead(j, key);
    fputs(json, j->out);
}

/*
 * json.c -- the JSON that secsub -F %j / %J prints: escaped strings, and a
 * payload that is itself JSON checked and printed again, compact or
 * --pretty, laid out the way mosquitto_sub lays it out (tabs, "key":<TAB>
 * value, arrays on one line) so scripts that read its output keep working.
 *
 * The parser is a plain recursive descent with a nesting limit; it never
 * writes while it checks, so an invalid payload prints nothing.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/core/client.h"

#define JSON_MAX_DEPTH 1000

typedef struct {
    const uint8_t *p, *end;
    FILE *out; /* NULL while checking */
    bool pretty;
    int depth; /* nesting of the output (tabs before a member) */
} json_walk;

static int json_value(json_walk *w);

static void json_skip_blank(json_walk *w)
{
    while (w->p < w->end && *w->p <= ' ')
        w->p++;
}

static void json_tabs(FILE *out, int n)
{
    while (n-- > 0)
        fputc('\t', out);
}

/* One code point of a string, escaped as JSON needs it. */
static void json_put_cp(FILE *out, unsigned cp)
{
    static const char esc[] = {'"', '"',  '\\', '\\', '\b', 'b',  '\f',
                               'f', '\n', 'n',  '\r', 'r',  '\t', 't'};
    for (size_t i = 0; i < sizeof esc; i += 2) {
        if (cp == (unsigned char)esc[i]) {
            fputc('\\', out);
            fputc(esc[i + 1], out);
            return;
        }
    }
    if (cp < 0x20) {
        fprintf(out, "\\u%04x", cp);
    } else if (cp < 0x80) {
        fputc((int)cp, out);
    } else if (cp < 0x800) {
        fputc((int)(0xC0 | cp >> 6), out);
        fputc((int)(0x80 | (cp & 0x3F)), out);
    } else if (cp < 0x10000) {
        fputc((int)(0xE0 | cp >> 12), out);
        fputc((int)(0x80 | ((cp >> 6) & 0x3F)), out);
        fputc((int)(0x80 | (cp & 0x3F)), out);
    } else {
        fputc((int)(0xF0 | cp >> 18), out);
        fputc((int)(0x80 | ((cp >> 12) & 0x3F)), out);
        fputc((int)(0x80 | ((cp >> 6) & 0x3F)), out);
        fputc((int)(0x80 | (cp & 0x3F)), out);
    }
}

void cli_json_string(FILE *out, const uint8_t *s, size_t n)
{
    fputc('"', out);
    for (size_t i = 0; i < n; i++) {
        if (s[i] < 0x80)
            json_put_cp(out, s[i]);
        else
            fputc(s[i], out); /* bytes of a multi-byte character go out as they are */
    }
    fputc('"', out);
}

static int json_hex4(json_walk *w, unsigned *cp)
{
    *cp = 0;
    if (w->end - w->p < 4) return -1;
    for (int i = 0; i < 4; i++) {
        unsigned c = *w->p++, d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return -1;
        *cp = *cp << 4 | d;
    }
    return 0;
}

/* \uXXXX (and its low surrogate); w->p is just after the 'u'. */
static int json_unicode(json_walk *w, unsigned *cp)
{
    unsigned lo;

    if (json_hex4(w, cp) != 0) return -1;
    if (*cp >= 0xDC00 && *cp <= 0xDFFF) return -1;
    if (*cp < 0xD800 || *cp > 0xDBFF) return 0;
    if (w->end - w->p < 6 || w->p[0] != '\\' || w->p[1] != 'u') return -1;
    w->p += 2;
    if (json_hex4(w, &lo) != 0 || lo < 0xDC00 || lo > 0xDFFF) return -1;
    *cp = 0x10000 + ((*cp - 0xD800) << 10) + (lo - 0xDC00);
    return 0;
}

/* A string; w->p is on the opening quote. */
static int json_string(json_walk *w)
{
    static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";

    w->p++;
    if (w->out) fputc('"', w->out);
    while (w->p < w->end && *w->p != '"') {
        unsigned cp = *w->p++;
        if (cp == '\\') {
            const char *e;
            if (w->p >= w->end) return -1;
            if (*w->p == 'u') {
                w->p++;
                if (json_unicode(w, &cp) != 0) return -1;
            } else if (*w->p != '\0' && (e = strchr(from, *w->p)) != NULL) {
                cp = (unsigned char)to[e - from];
                w->p++;
            } else {
                return -1;
            }
            if (w->out) json_put_cp(w->out, cp);
        } else if (w->out) {
            if (cp < 0x80)
                json_put_cp(w->out, cp);
            else
                fputc((int)cp, w->out);
        }
    }
    if (w->p >= w->end) return -1;
    w->p++;
    if (w->out) fputc('"', w->out);
    return 0;
}

/* A number, printed back as its value: integers in int range as such,
 * others with 15 significant digits, or 17 when 15 do not round-trip. */
static int json_number(json_walk *w)
{
    char buf[64], *endp;
    size_t n = 0;
    double d;

    while (w->p + n < w->end && n + 1 < sizeof buf && strchr("0123456789+-eE.", w->p[n]) &&
           w->p[n] != '\0') {
        buf[n] = (char)w->p[n];
        n++;
    }
    buf[n] = '\0';
    d = strtod(buf, &endp);
    if (endp == buf) return -1;
    w->p += endp - buf;
    if (w->out == NULL) return 0;
    if (isnan(d) || isinf(d)) {
        fputs("null", w->out);
    } else if (d >= -2147483648.0 && d <= 2147483647.0 && d == (double)(int)d) {
        fprintf(w->out, "%d", (int)d);
    } else {
        char num[64];
        double back = 0;
        snprintf(num, sizeof num, "%1.15g", d);
        if (sscanf(num, "%lg", &back) != 1 || back != d) snprintf(num, sizeof num, "%1.17g", d);
        fputs(num, w->out);
    }
    return 0;
}

static int json_word(json_walk *w, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(w->end - w->p) < n || memcmp(w->p, word, n) != 0) return -1;
    w->p += n;
    if (w->out) fputs(word, w->out);
    return 0;
}

/* Object or array; w->p is on '{' or '['. */
static int json_container(json_walk *w)
{
    const bool obj = *w->p == '{';
    const uint8_t close = obj ? '}' : ']';
    bool first = true;

    if (w->depth >= JSON_MAX_DEPTH) return -1;
    w->p++;
    w->depth++;
    if (w->out) fputc(obj ? '{' : '[', w->out);
    if (w->out && obj && w->pretty) fputc('\n', w->out);
    json_skip_blank(w);
    while (w->p < w->end && *w->p != close) {
        if (!first) {
            if (*w->p != ',') return -1;
            w->p++;
            json_skip_blank(w);
            if (w->out && obj) fputs(w->pretty ? ",\n" : ",", w->out);
            if (w->out && !obj) fputs(w->pretty ? ", " : ",", w->out);
        }
        first = false;
        if (obj) {
            if (w->out && w->pretty) json_tabs(w->out, w->depth);
            if (w->p >= w->end || *w->p != '"' || json_string(w) != 0) return -1;
            json_skip_blank(w);
            if (w->p >= w->end || *w->p != ':') return -1;
            w->p++;
            if (w->out) fputs(w->pretty ? ":\t" : ":", w->out);
        }
        if (json_value(w) != 0) return -1;
        json_skip_blank(w);
    }
    if (w->p >= w->end) return -1;
    w->p++;
    w->depth--;
    if (w->out && obj && w->pretty) {
        if (!first) fputc('\n', w->out);
        json_tabs(w->out, w->depth);
    }
    if (w->out) fputc(close, w->out);
    return 0;
}

static int json_value(json_walk *w)
{
    json_skip_blank(w);
    if (w->p >= w->end) return -1;
    switch (*w->p) {
    case '{':
    case '[':
        return json_container(w);
    case '"':
        return json_string(w);
    case 'n':
        return json_word(w, "null");
    case 't':
        return json_word(w, "true");
    case 'f':
        return json_word(w, "false");
    default:
        return json_number(w);
    }
}

int cli_json_value(FILE *out, const uint8_t *text, size_t len, bool pretty, int depth)
{
    json_walk w = {.p = text, .end = text + len, .out = NULL, .pretty = pretty, .depth = depth};

    /* check first, so that an invalid payload prints nothing */
    if (json_value(&w) != 0) return -1;
    json_skip_blank(&w);
    if (w.p != w.end) return -1;
    w.p = text;
    w.out = out;
    w.depth = depth;
    return json_value(&w);
}

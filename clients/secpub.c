/*
 * secpub -- publish MQTT messages, with mosquitto_pub's flags.
 *
 * One connection per run. QoS 1/2 messages are kept in a small in-flight
 * window; DISCONNECT is sent only after every PUBACK / PUBCOMP arrived, so
 * exit status 0 means the broker has taken every message.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "clients/core/client.h"

#define PUB_MAX_INFLIGHT 20 /* -M default, as mosquitto_pub */

enum pub_mode { MODE_NONE, MODE_MESSAGE, MODE_FILE, MODE_LINES, MODE_STDIN, MODE_NULL };
enum flight_state { WAIT_PUBACK, WAIT_PUBREC, WAIT_PUBCOMP };

typedef struct {
    cli_opts o;
    cli_conn *c;
    const char *topic;
    enum pub_mode mode;
    const char *message;
    const char *file;
    bool retain;
    long repeat;
    double repeat_delay;
    uint8_t *payload;
    size_t payload_len;
    struct pub_flight {
        uint16_t id;
        uint8_t state;
    } * flight;
    unsigned nflight;
    long max_inflight; /* -M */
    /* -l: bytes read from stdin not yet published */
    uint8_t *lb;
    size_t lb_len, lb_cap;
    bool stdin_eof;
} pub_ctx;

static void pub_usage(FILE *out)
{
    fputs("secpub: publish MQTT messages (flags as mosquitto_pub)\n"
          "Usage: secpub -t TOPIC (-m MSG | -f FILE | -l | -s | -n) [options]\n"
          "Message:\n"
          "  -t, --topic TOPIC        topic to publish to (required)\n"
          "  -m, --message MSG        send MSG\n"
          "  -f, --file FILE          send the content of FILE as one message\n"
          "  -l, --stdin-line         send each line of stdin as a message (blank lines\n"
          "                           are skipped), all over one connection\n"
          "  -s, --stdin-file         send all of stdin as one message\n"
          "  -n, --null-message       send an empty message\n"
          "  -r, --retain             ask the broker to retain the message\n"
          "  --repeat N               publish the message N times (-m, -f, -s, -n)\n"
          "  --repeat-delay SECONDS   wait this long between repeats (decimals allowed)\n"
          "  -M N                     at most N QoS 1/2 messages in flight (default 20)\n",
          out);
    cli_opts_usage_common(out);
    fputs("Exit status: 0 success; 1..5 the broker's CONNACK refusal code; 64 bad usage;\n"
          "66 unreadable input file; 69 any other failure (one line on stderr says why).\n",
          out);
}

static int pub_usage_error(const char *msg)
{
    fprintf(stderr, "secpub: %s (see secpub --help)\n", msg);
    return CLI_EXIT_USAGE;
}

static int pub_set_mode(pub_ctx *p, enum pub_mode m)
{
    if (p->mode != MODE_NONE && p->mode != m) return -1;
    p->mode = m;
    return 0;
}

/* A flag with a value (argv[*i] is the flag): 1 taken, 0 not secpub's,
 * or -(exit status + 1) on a bad value. */
static int pub_parse_valued(pub_ctx *p, int argc, char **argv, int *i, enum pub_mode *m)
{
    static const char *const flags[] = {"-t",     "--topic", "-m",       "--message",      "-f",
                                        "--file", "-M",      "--repeat", "--repeat-delay", NULL};
    const char *a = argv[*i], *v;
    char err[128], *end;
    unsigned k;

    for (k = 0; flags[k] && strcmp(a, flags[k]) != 0; k++)
        ;
    if (flags[k] == NULL) return 0;
    if (*i + 1 >= argc) {
        snprintf(err, sizeof(err), "%s needs a value", a);
        return -(pub_usage_error(err) + 1);
    }
    v = argv[++*i];
    if (k <= 1) {
        p->topic = v;
    } else if (k <= 3) {
        p->message = v;
        *m = MODE_MESSAGE;
    } else if (k <= 5) {
        p->file = v;
        *m = MODE_FILE;
    } else if (k == 6) {
        if (!cli_parse_int(v, 1, 65535, &p->max_inflight))
            return -(pub_usage_error("-M needs a message count 1..65535") + 1);
    } else if (k == 7) {
        if (!cli_parse_int(v, 1, 1000000000, &p->repeat))
            return -(pub_usage_error("--repeat needs a count >= 1") + 1);
    } else {
        errno = 0;
        p->repeat_delay = strtod(v, &end);
        if (errno || *end || end == v || !(p->repeat_delay >= 0) || p->repeat_delay > 86400.0 * 365)
            return -(pub_usage_error("--repeat-delay needs seconds >= 0") + 1);
    }
    return 1;
}

/* A flag without a value: 1 when it was one of secpub's, 0 otherwise. */
static int pub_parse_switch(pub_ctx *p, const char *a, enum pub_mode *m)
{
    if (strcmp(a, "-l") == 0 || strcmp(a, "--stdin-line") == 0)
        *m = MODE_LINES;
    else if (strcmp(a, "-s") == 0 || strcmp(a, "--stdin-file") == 0)
        *m = MODE_STDIN;
    else if (strcmp(a, "-n") == 0 || strcmp(a, "--null-message") == 0)
        *m = MODE_NULL;
    else if (strcmp(a, "-r") == 0 || strcmp(a, "--retain") == 0)
        p->retain = true;
    else
        return 0;
    return 1;
}

/* Checks that need every flag. -1 to go on, or the exit status. */
static int pub_check(pub_ctx *p)
{
    char err[512];

    if (p->topic == NULL) p->topic = p->o.url_topic;
    if (p->topic == NULL) return pub_usage_error("-t TOPIC is required");
    if (mqtt_topic_name_validate((const uint8_t *)p->topic, strlen(p->topic)) != MQTT_OK) {
        snprintf(err, sizeof(err), "-t '%s' is not a valid topic name (no + or #, not empty)",
                 p->topic);
        return pub_usage_error(err);
    }
    if (p->mode == MODE_NONE) return pub_usage_error("give a message: -m, -f, -l, -s or -n");
    if (p->repeat > 1 && p->mode == MODE_LINES)
        return pub_usage_error("--repeat works with -m, -f, -s and -n, not -l");
    if (p->repeat_delay > 0 && p->repeat == 0)
        return pub_usage_error("--repeat-delay needs --repeat");
    if (cli_opts_finish(&p->o, err, sizeof(err)) != CLI_OK) return pub_usage_error(err);
    if (p->repeat == 0) p->repeat = 1;
    if (p->max_inflight == 0) p->max_inflight = PUB_MAX_INFLIGHT;
    p->flight = calloc((size_t)p->max_inflight, sizeof(*p->flight));
    if (p->flight == NULL) return pub_usage_error("out of memory");
    return -1;
}

/* Parse argv; returns -1 to continue, otherwise the exit status. */
static int pub_parse(pub_ctx *p, int argc, char **argv)
{
    char err[512];
    int i;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;
        enum pub_mode m = MODE_NONE;

        if (strcmp(a, "--help") == 0) {
            pub_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            cli_print_version(stdout, "secpub");
            return 0;
        }
        rc = cli_opts_parse_common(&p->o, argc, argv, &i, err, sizeof(err));
        if (rc < 0) return pub_usage_error(err);
        if (rc == 1) continue;
        rc = pub_parse_valued(p, argc, argv, &i, &m);
        if (rc < 0) return -rc - 1;
        if (rc == 0 && !pub_parse_switch(p, a, &m)) {
            snprintf(err, sizeof(err), "unknown option '%s'", a);
            return pub_usage_error(err);
        }
        if (m != MODE_NONE && pub_set_mode(p, m) != 0)
            return pub_usage_error("give only one of -m, -f, -l, -s, -n");
    }
    return pub_check(p);
}

/* Read all of fd into p->payload. */
static int pub_read_all(pub_ctx *p, int fd)
{
    size_t cap = 4096;
    p->payload = malloc(cap);
    p->payload_len = 0;
    if (p->payload == NULL) return -1;
    for (;;) {
        ssize_t n;
        if (cap - p->payload_len < 4096) {
            uint8_t *q = realloc(p->payload, cap * 2);
            if (q == NULL) return -1;
            p->payload = q;
            cap *= 2;
        }
        n = read(fd, p->payload + p->payload_len, cap - p->payload_len);
        if (n == 0) break;
        if (n < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        p->payload_len += (size_t)n;
        if (p->payload_len > MQTT_MAX_REMAINING_LENGTH) {
            errno = EFBIG;
            return -1;
        }
    }
    return 0;
}

/* Load the message of -m/-f/-s/-n before connecting. Exit status or -1. */
static int pub_load(pub_ctx *p)
{
    if (p->mode == MODE_MESSAGE) {
        p->payload = (uint8_t *)strdup(p->message);
        p->payload_len = strlen(p->message);
    } else if (p->mode == MODE_FILE) {
        int fd = open(p->file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || pub_read_all(p, fd) != 0) {
            fprintf(stderr, "secpub: cannot read %s: %s\n", p->file, strerror(errno));
            if (fd >= 0) close(fd);
            return CLI_EXIT_NOINPUT;
        }
        close(fd);
    } else if (p->mode == MODE_STDIN) {
        if (pub_read_all(p, 0) != 0) {
            fprintf(stderr, "secpub: cannot read stdin: %s\n", strerror(errno));
            return CLI_EXIT_NOINPUT;
        }
    }
    return -1;
}

static int pub_find(pub_ctx *p, uint16_t id, uint8_t state)
{
    unsigned i;
    for (i = 0; i < p->nflight; i++)
        if (p->flight[i].id == id && p->flight[i].state == state) return (int)i;
    return -1;
}

static void pub_remove(pub_ctx *p, unsigned i)
{
    p->flight[i] = p->flight[--p->nflight];
}

/* React to one packet from the broker: advance the QoS 1/2 flows. */
static int pub_handle(pub_ctx *p, const mqtt_header *h)
{
    uint16_t id = 0;
    int k;

    switch (h->type) {
    case MQTT_PUBACK:
    case MQTT_PUBREC:
    case MQTT_PUBCOMP:
    case MQTT_PUBREL:
        if (cli_decode_ack(&p->o, h, &id) != MQTT_OK)
            return cli_conn_fail(p->c, CLI_ERR_PROTOCOL, "malformed %s from the broker",
                                 mqtt_type_name(h->type));
        break;
    case MQTT_PUBLISH: {
        /* we subscribe to nothing, but answer politely */
        mqtt_publish m;
        if (cli_decode_publish(&p->o, h, &m, NULL) != MQTT_OK)
            return cli_conn_fail(p->c, CLI_ERR_PROTOCOL, "malformed PUBLISH from the broker");
        if (m.qos == 1) return cli_send_ack(p->c, MQTT_PUBACK, m.packet_id);
        if (m.qos == 2) return cli_send_ack(p->c, MQTT_PUBREC, m.packet_id);
        return CLI_OK;
    }
    default:
        return CLI_OK;
    }
    if (h->type == MQTT_PUBACK && (k = pub_find(p, id, WAIT_PUBACK)) >= 0) {
        pub_remove(p, (unsigned)k);
    } else if (h->type == MQTT_PUBREC) {
        k = pub_find(p, id, WAIT_PUBREC);
        if (k >= 0) p->flight[k].state = WAIT_PUBCOMP;
        /* a repeated PUBREC (id already WAIT_PUBCOMP) is answered again */
        if (k >= 0 || pub_find(p, id, WAIT_PUBCOMP) >= 0)
            return cli_send_ack(p->c, MQTT_PUBREL, id);
    } else if (h->type == MQTT_PUBCOMP && (k = pub_find(p, id, WAIT_PUBCOMP)) >= 0) {
        pub_remove(p, (unsigned)k);
    } else if (h->type == MQTT_PUBREL) {
        return cli_send_ack(p->c, MQTT_PUBCOMP, id);
    }
    return CLI_OK;
}

/* Wait for packets up to timeout_ms (-1: until one arrives) and handle them. */
static int pub_service(pub_ctx *p, int timeout_ms)
{
    mqtt_header h;
    int rc = cli_wait(p->c, timeout_ms, -1, &h);
    if (rc == CLI_PACKET) return pub_handle(p, &h);
    return rc == CLI_TIMEOUT ? CLI_OK : rc;
}

/* Publish one message, waiting first for room in the in-flight window. */
static int pub_one(pub_ctx *p, const uint8_t *payload, size_t len)
{
    uint16_t id = 0;
    int rc;

    while (p->o.qos > 0 && p->nflight >= (unsigned)p->max_inflight)
        if ((rc = pub_service(p, -1)) < 0) return rc;
    if (p->o.qos > 0) {
        do
            id = cli_next_packet_id(p->c);
        while (pub_find(p, id, WAIT_PUBACK) >= 0 || pub_find(p, id, WAIT_PUBREC) >= 0 ||
               pub_find(p, id, WAIT_PUBCOMP) >= 0);
        p->flight[p->nflight].id = id;
        p->flight[p->nflight].state = p->o.qos == 1 ? WAIT_PUBACK : WAIT_PUBREC;
        p->nflight++;
    }
    return cli_send_publish(p->c, p->topic, payload, len, p->o.qos, p->retain, false, id);
}

static int pub_single(pub_ctx *p)
{
    long r;
    int rc;

    for (r = 0; r < p->repeat; r++) {
        if ((rc = pub_one(p, p->payload, p->payload_len)) < 0) return rc;
        if (r + 1 < p->repeat && p->repeat_delay > 0) {
            int64_t until = cli_now_ms() + (int64_t)(p->repeat_delay * 1000.0);
            int64_t left;
            while ((left = until - cli_now_ms()) > 0)
                if ((rc = pub_service(p, (int)left)) < 0) return rc;
        }
    }
    return CLI_OK;
}

/* Publish every complete line in the -l buffer while the window has room;
 * at end of input the last line needs no newline. */
static int pub_lines_flush(pub_ctx *p)
{
    size_t start = 0;
    int rc = CLI_OK;

    while (start < p->lb_len && (p->o.qos == 0 || p->nflight < (unsigned)p->max_inflight)) {
        uint8_t *nl = memchr(p->lb + start, '\n', p->lb_len - start);
        size_t end;
        if (nl == NULL && !p->stdin_eof) break;
        end = nl ? (size_t)(nl - p->lb) : p->lb_len;
        if (end > start && (rc = pub_one(p, p->lb + start, end - start)) < 0) break;
        start = nl ? end + 1 : end;
    }
    memmove(p->lb, p->lb + start, p->lb_len - start);
    p->lb_len -= start;
    return rc;
}

static bool pub_lines_ready(const pub_ctx *p)
{
    return p->lb_len > 0 && (p->stdin_eof || memchr(p->lb, '\n', p->lb_len) != NULL);
}

static int pub_lines(pub_ctx *p)
{
    mqtt_header h;
    int rc;

    for (;;) {
        bool room = p->o.qos == 0 || p->nflight < (unsigned)p->max_inflight;
        int extra;

        if (room && pub_lines_ready(p)) {
            if ((rc = pub_lines_flush(p)) < 0) return rc;
            continue;
        }
        if (p->stdin_eof && p->lb_len == 0) return CLI_OK;
        extra = (!p->stdin_eof && room) ? 0 : -1;
        rc = cli_wait(p->c, -1, extra, &h);
        if (rc == CLI_PACKET) {
            if ((rc = pub_handle(p, &h)) < 0) return rc;
        } else if (rc == CLI_EXTRA) {
            ssize_t n;
            if (p->lb_cap - p->lb_len < 65536) {
                size_t cap = p->lb_cap ? p->lb_cap * 2 : 131072;
                uint8_t *q = realloc(p->lb, cap);
                if (q == NULL) return cli_conn_fail(p->c, CLI_ERR_ALLOC, "out of memory");
                p->lb = q;
                p->lb_cap = cap;
            }
            n = read(0, p->lb + p->lb_len, p->lb_cap - p->lb_len);
            if (n > 0)
                p->lb_len += (size_t)n;
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                p->stdin_eof = true;
        } else if (rc < 0) {
            return rc;
        }
    }
}

int main(int argc, char **argv)
{
    pub_ctx p;
    bool sp = false;
    int rc, status;

    memset(&p, 0, sizeof(p));
    cli_opts_init(&p.o, "secpub");
    if ((status = pub_parse(&p, argc, argv)) >= 0) {
        free(p.flight);
        return status;
    }
    if ((status = pub_load(&p)) >= 0) {
        free(p.payload);
        free(p.flight);
        return status;
    }
    cli_signals_install();

    rc = cli_conn_open(&p.c, &p.o, &sp);
    if (rc == CLI_OK) {
        rc = p.mode == MODE_LINES ? pub_lines(&p) : pub_single(&p);
        while (rc >= 0 && p.nflight > 0)
            rc = pub_service(&p, -1);
        /* QoS 0: the last messages may still sit in our buffer */
        if (rc >= 0) rc = cli_flush(p.c, cli_stall_ms(p.c));
    }
    status = cli_exit_code(p.c, rc);
    if (rc < 0 && rc != CLI_ERR_INTR && !p.o.quiet)
        fprintf(stderr, "secpub: %s\n", cli_conn_error(p.c));
    if (rc >= 0 || rc == CLI_ERR_INTR)
        cli_conn_close(p.c);
    else
        cli_conn_free(p.c);
    free(p.payload);
    free(p.lb);
    free(p.flight);
    return status;
}

/*
 * secsub -- subscribe and print MQTT messages, with mosquitto_sub's flags.
 *
 * Every message is written and flushed on its own, so nothing is lost when
 * stdout is a pipe. QoS 1 messages are acknowledged after they are printed;
 * QoS 2 messages are printed once (a re-sent PUBLISH with a packet id still
 * awaiting PUBREL is not printed again) and completed with PUBREC / PUBCOMP.
 *
 * Like mosquitto_sub, a connection lost after the first CONNACK is opened
 * again (every SUB_RECONNECT_MS, for as long as it takes) and the
 * subscriptions are made again; -C, -W and the message count carry on.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/core/client.h"

#define SUB_QOS2_MAX 65536
#define SUB_QOS2_DRAIN_MS 2000 /* after -C: wait this long for pending PUBRELs */
#define SUB_RECONNECT_MS 1000  /* between two attempts after a lost connection */

typedef struct {
    cli_opts o;
    cli_conn *c;
    const char **topics, **filter_out, **unsub;
    unsigned ntopics, nfilter_out, nunsub;
    bool verbose;
    bool no_newline;
    bool skip_retained;
    bool retained_only;
    bool remove_retained;
    bool exit_after_sub; /* -E */
    bool persistent;
    bool pretty;
    const char *format; /* -F */
    long count;         /* -C, 0 = unlimited */
    long timeout_s;     /* -W, 0 = none */
    long received;
    bool stop; /* --retained-only met a fresh message */
    uint16_t sub_id, unsub_id;
    bool subscribed, unsubscribed;
    uint8_t *qos2; /* bitmap: packet ids awaiting PUBREL */
    unsigned nqos2;
    mqtt_props props; /* of the message being handled (-F %A .. %S; empty below 5) */
} sub_ctx;

static void sub_usage(FILE *out)
{
    fputs("secsub: subscribe to MQTT topics and print the messages (flags as mosquitto_sub)\n"
          "Usage: secsub -t FILTER [-t FILTER ...] [options]\n"
          "Subscription:\n"
          "  -t, --topic FILTER       topic filter to subscribe to (repeatable; + and # allowed)\n"
          "  -T, --filter-out FILTER  do not print messages whose topic matches (repeatable)\n"
          "  -U, --unsubscribe FILTER send UNSUBSCRIBE for FILTER after subscribing\n"
          "                           (repeatable; for persistent sessions)\n"
          "  -E                       exit once the broker acknowledged the (un)subscriptions\n"
          "  -q, --qos 0|1|2          maximum QoS of the subscriptions\n"
          "  -c, --disable-clean-session\n"
          "                           persistent session: the broker keeps the subscriptions\n"
          "                           and queues QoS 1/2 messages while we are away (needs -i)\n"
          "Output:\n"
          "  -v, --verbose            print \"topic payload\" instead of just the payload\n"
          "  -F FORMAT                print each message as FORMAT says (%t topic, %p payload,\n"
          "                           %q %r %m %l %x %X %I %U %j %J, @ strftime; see secsub(1))\n"
          "  --pretty                 indent the JSON of %j and %J\n"
          "  -N                       do not add a newline after each payload\n"
          "  -R, --no-retained        skip stale retained messages (those with retain=1)\n"
          "  --retained-only          print only retained messages; exit at the first fresh one\n"
          "  --remove-retained        clear each retained message received (publish an empty\n"
          "                           retained message to its topic)\n"
          "  -C, --count N            exit (status 0) after N messages\n"
          "  -W, --timeout SECONDS    exit with status 27 if still running after SECONDS\n"
          "                           (counted from the broker's CONNACK)\n",
          out);
    cli_opts_usage_common(out);
    fputs("A lost connection is opened again every second and the subscriptions are made\n"
          "again (as mosquitto_sub does).\n"
          "Exit status: 0 success (-C reached, -E, --retained-only, or interrupted); 1..5 the\n"
          "broker's CONNACK refusal code; 27 -W timeout; 64 bad usage; 69 any other failure\n"
          "(one line on stderr says why).\n",
          out);
}

static int sub_usage_error(const char *msg)
{
    fprintf(stderr, "secsub: %s (see secsub --help)\n", msg);
    return CLI_EXIT_USAGE;
}

static bool arg_is(const char *a, const char *s, const char *l)
{
    return (s != NULL && strcmp(a, s) == 0) || (l != NULL && strcmp(a, l) == 0);
}

/* A flag without a value: 1 when it was one of secsub's, 0 otherwise. */
static int sub_parse_switch(sub_ctx *s, const char *a)
{
    bool *flag = NULL;

    if (arg_is(a, "-v", "--verbose"))
        flag = &s->verbose;
    else if (arg_is(a, "-N", NULL))
        flag = &s->no_newline;
    else if (arg_is(a, "-R", "--no-retained"))
        flag = &s->skip_retained;
    else if (arg_is(a, NULL, "--retained-only"))
        flag = &s->retained_only;
    else if (arg_is(a, NULL, "--remove-retained"))
        flag = &s->remove_retained;
    else if (arg_is(a, "-E", NULL))
        flag = &s->exit_after_sub;
    else if (arg_is(a, NULL, "--pretty"))
        flag = &s->pretty;
    else if (arg_is(a, "-c", "--disable-clean-session"))
        flag = &s->persistent;
    if (flag == NULL) return 0;
    *flag = true;
    return 1;
}

/* A filter of -t / -T / -U, checked. 0 or the exit status. */
static int sub_add_filter(const char **list, unsigned *n, const char *flag, const char *v)
{
    char err[512];

    if (strlen(v) > 65535 || mqtt_topic_filter_validate((const uint8_t *)v, strlen(v)) != MQTT_OK) {
        snprintf(err, sizeof(err), "%s '%s' is not a valid topic filter", flag, v);
        return sub_usage_error(err);
    }
    list[(*n)++] = v;
    return 0;
}

/* A flag with a value (argv[*i] is the flag): 1 taken, 0 not secsub's,
 * or -(exit status + 1) on a bad value. */
static int sub_parse_valued(sub_ctx *s, int argc, char **argv, int *i)
{
    const char *a = argv[*i], *v;
    int rc = 0;

    if (!arg_is(a, "-t", "--topic") && !arg_is(a, "-T", "--filter-out") &&
        !arg_is(a, "-U", "--unsubscribe") && !arg_is(a, "-C", "--count") &&
        !arg_is(a, "-W", "--timeout") && !arg_is(a, "-F", NULL))
        return 0;
    if (*i + 1 >= argc) {
        char err[128];
        snprintf(err, sizeof(err), "%s needs a value", a);
        return -(sub_usage_error(err) + 1);
    }
    v = argv[++*i];
    if (arg_is(a, "-t", "--topic"))
        rc = sub_add_filter(s->topics, &s->ntopics, "-t", v);
    else if (arg_is(a, "-T", "--filter-out"))
        rc = sub_add_filter(s->filter_out, &s->nfilter_out, "-T", v);
    else if (arg_is(a, "-U", "--unsubscribe"))
        rc = sub_add_filter(s->unsub, &s->nunsub, "-U", v);
    else if (arg_is(a, "-C", "--count") && !cli_parse_int(v, 1, 2000000000, &s->count))
        rc = sub_usage_error("-C needs a message count >= 1");
    else if (arg_is(a, "-W", "--timeout") && !cli_parse_int(v, 1, 2000000, &s->timeout_s))
        rc = sub_usage_error("-W needs seconds >= 1");
    else if (arg_is(a, "-F", NULL))
        s->format = v;
    return rc != 0 ? -(rc + 1) : 1;
}

/* Checks that need every flag. -1 to go on, or the exit status. */
static int sub_check(sub_ctx *s)
{
    char err[512];

    if (s->o.url_topic != NULL && sub_add_filter(s->topics, &s->ntopics, "-L", s->o.url_topic) != 0)
        return CLI_EXIT_USAGE;
    if (s->ntopics == 0) return sub_usage_error("give at least one -t FILTER");
    if (s->persistent && s->o.id == NULL)
        return sub_usage_error("-c needs a client id (-i): the session is stored under it");
    if (s->retained_only && s->skip_retained)
        return sub_usage_error("-R and --retained-only cannot be combined");
    if (s->format != NULL && cli_format_check(s->format, err, sizeof(err)) != CLI_OK)
        return sub_usage_error(err);
    s->o.clean_session = !s->persistent;
    if (cli_opts_finish(&s->o, err, sizeof(err)) != CLI_OK) return sub_usage_error(err);
    return -1;
}

/* Parse argv; returns -1 to continue, otherwise the exit status. */
static int sub_parse(sub_ctx *s, int argc, char **argv)
{
    char err[512];
    int i;

    s->topics = calloc((size_t)argc + 1, sizeof(*s->topics));
    s->filter_out = calloc((size_t)argc, sizeof(*s->filter_out));
    s->unsub = calloc((size_t)argc, sizeof(*s->unsub));
    if (!s->topics || !s->filter_out || !s->unsub) return sub_usage_error("out of memory");
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;

        if (strcmp(a, "--help") == 0) {
            sub_usage(stdout);
            return 0;
        }
        if (strcmp(a, "--version") == 0) {
            cli_print_version(stdout, "secsub");
            return 0;
        }
        rc = cli_opts_parse_common(&s->o, argc, argv, &i, err, sizeof(err));
        if (rc < 0) return sub_usage_error(err);
        if (rc == 1 || sub_parse_switch(s, a)) continue;
        rc = sub_parse_valued(s, argc, argv, &i);
        if (rc < 0) return -rc - 1;
        if (rc == 0) {
            snprintf(err, sizeof(err), "unknown option '%s'", a);
            return sub_usage_error(err);
        }
    }
    return sub_check(s);
}

static bool qos2_has(const sub_ctx *s, uint16_t id)
{
    return (s->qos2[id >> 3] >> (id & 7)) & 1;
}

static void qos2_set(sub_ctx *s, uint16_t id, bool on)
{
    if (on == qos2_has(s, id)) return;
    s->qos2[id >> 3] ^= (uint8_t)(1u << (id & 7));
    s->nqos2 += on ? 1 : (unsigned)-1;
}

static bool sub_filtered_out(const sub_ctx *s, const mqtt_publish *m)
{
    for (unsigned i = 0; i < s->nfilter_out; i++)
        if (mqtt_topic_matches((const uint8_t *)s->filter_out[i], strlen(s->filter_out[i]),
                               m->topic.ptr, m->topic.len))
            return true;
    return false;
}

/* Write one message as -v / -N / -F say. */
static int sub_print(sub_ctx *s, const mqtt_publish *m)
{
    char err[512];

    if (s->format != NULL) {
        if (cli_format_print(stdout, s->format, m, &s->props, s->pretty, err, sizeof(err)) != 0 &&
            !s->o.quiet)
            fprintf(stderr, "secsub: %s\n", err);
    } else {
        if (s->verbose) {
            fwrite(m->topic.ptr, 1, m->topic.len, stdout);
            fputc(' ', stdout);
        }
        if (m->payload_len > 0) fwrite(m->payload, 1, m->payload_len, stdout);
    }
    if (!s->no_newline) fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_conn_fail(s->c, CLI_ERR_IO, "cannot write to stdout: %s", strerror(errno));
    return CLI_OK;
}

/* Print one message (unless a flag says otherwise) and count it. */
static int sub_deliver(sub_ctx *s, const mqtt_publish *m)
{
    int rc;

    if (s->count > 0 && s->received >= s->count) return CLI_OK;
    if (sub_filtered_out(s, m)) return CLI_OK;
    if (s->remove_retained && m->retain && m->payload_len > 0) {
        char topic[65536];
        memcpy(topic, m->topic.ptr, m->topic.len);
        topic[m->topic.len] = '\0';
        if ((rc = cli_send_publish(s->c, topic, NULL, 0, 0, true, false, 0)) < 0) return rc;
    }
    if (s->skip_retained && m->retain) return CLI_OK;
    if ((rc = sub_print(s, m)) < 0) return rc;
    s->received++;
    return CLI_OK;
}

static bool sub_done(const sub_ctx *s)
{
    if (s->stop) return true;
    if (s->exit_after_sub && s->subscribed && (s->nunsub == 0 || s->unsubscribed)) return true;
    return s->count > 0 && s->received >= s->count;
}

static int sub_handle_publish(sub_ctx *s, const mqtt_header *h)
{
    mqtt_publish m;
    int rc;

    if ((rc = cli_decode_publish(&s->o, h, &m, &s->props)) != MQTT_OK)
        return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "malformed PUBLISH from the broker: %s",
                             mqtt_strerror(rc));
    /* --retained-only: the first fresh message ends the run, unprinted */
    if (s->retained_only && !m.retain && !(s->remove_retained && m.payload_len == 0))
        s->stop = true;
    /* past -C, leave QoS 1/2 messages unacknowledged: a persistent
     * session gets them again next time */
    if (sub_done(s) && m.qos > 0) return CLI_OK;
    if (s->stop) return CLI_OK;
    if (m.qos == 2) {
        if (!qos2_has(s, m.packet_id)) {
            if ((rc = sub_deliver(s, &m)) < 0) return rc;
            qos2_set(s, m.packet_id, true);
        }
        return cli_send_ack(s->c, MQTT_PUBREC, m.packet_id);
    }
    if ((rc = sub_deliver(s, &m)) < 0) return rc;
    return m.qos == 1 ? cli_send_ack(s->c, MQTT_PUBACK, m.packet_id) : CLI_OK;
}

static int sub_handle_suback(sub_ctx *s, const mqtt_header *h)
{
    mqtt_suback a;
    unsigned i, denied = 0;
    int rc;

    if ((rc = cli_decode_suback(&s->o, h, &a)) != MQTT_OK)
        return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "malformed SUBACK from the broker: %s",
                             mqtt_strerror(rc));
    if (a.packet_id != s->sub_id || s->subscribed) return CLI_OK;
    s->subscribed = true;
    if (a.count != s->ntopics)
        return cli_conn_fail(s->c, CLI_ERR_PROTOCOL,
                             "SUBACK has %u return codes for %u topic filters", a.count,
                             s->ntopics);
    for (i = 0; i < a.count; i++) {
        if (a.codes[i] >= MQTT_SUBACK_FAILURE) { /* v5: any reason >= 0x80 */
            denied++;
            if (denied < a.count && !s->o.quiet)
                fprintf(stderr, "secsub: warning: the broker denied the subscription to '%s'\n",
                        s->topics[i]);
        }
    }
    if (denied == a.count)
        return cli_conn_fail(s->c, CLI_ERR_PROTOCOL,
                             "the broker denied every subscription (SUBACK 0x80)%s",
                             a.count == 1 ? "" : " -- check the ACL");
    return CLI_OK;
}

/* React to one packet from the broker. */
static int sub_handle(sub_ctx *s, const mqtt_header *h)
{
    uint16_t id;

    switch (h->type) {
    case MQTT_PUBLISH:
        return sub_handle_publish(s, h);
    case MQTT_PUBREL:
        if (cli_decode_ack(&s->o, h, &id) != MQTT_OK)
            return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "malformed PUBREL from the broker");
        qos2_set(s, id, false);
        return cli_send_ack(s->c, MQTT_PUBCOMP, id);
    case MQTT_SUBACK:
        return sub_handle_suback(s, h);
    case MQTT_UNSUBACK:
        if (cli_decode_ack(&s->o, h, &id) != MQTT_OK)
            return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "malformed UNSUBACK from the broker");
        if (id == s->unsub_id) s->unsubscribed = true;
        return CLI_OK;
    case MQTT_CONNACK:
        return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "the broker sent a second CONNACK");
    default:
        return CLI_OK;
    }
}

/* SUBSCRIBE (and UNSUBSCRIBE for -U) on a new connection. */
static int sub_subscribe(sub_ctx *s)
{
    int rc;

    s->subscribed = s->unsubscribed = false;
    s->sub_id = cli_next_packet_id(s->c);
    rc = cli_send_subscribe(s->c, s->sub_id, s->topics, s->ntopics, s->o.qos);
    if (rc < 0 || s->nunsub == 0) return rc;
    s->unsub_id = cli_next_packet_id(s->c);
    return cli_send_unsubscribe(s->c, s->unsub_id, s->unsub, s->nunsub);
}

/* Packets until done, -W (CLI_TIMEOUT) or an error. */
static int sub_loop(sub_ctx *s, int64_t deadline)
{
    mqtt_header h;
    int rc;

    while (!sub_done(s)) {
        int wait = -1;
        if (deadline >= 0) {
            /* checked here too: under a steady stream cli_wait always has a packet */
            int64_t left = deadline - cli_now_ms();
            if (left <= 0) return CLI_TIMEOUT;
            wait = (int)left;
        }
        rc = cli_wait(s->c, wait, -1, &h);
        if (rc == CLI_TIMEOUT) return CLI_TIMEOUT; /* -W expired */
        if (rc < 0) return rc;
        if ((rc = sub_handle(s, &h)) < 0) return rc;
    }
    return CLI_OK;
}

/* Errors after which mosquitto_sub connects again: the network, not a
 * refusal, a bad certificate or a broken broker. */
static bool sub_retryable(int err)
{
    return err == CLI_ERR_CLOSED || err == CLI_ERR_IO || err == CLI_ERR_TIMEOUT ||
           err == CLI_ERR_CONNECT || err == CLI_ERR_DNS;
}

/* Wait before the next attempt: CLI_OK, CLI_TIMEOUT (-W passed) or
 * CLI_ERR_INTR. */
static int sub_pause(int64_t deadline)
{
    int64_t until = cli_now_ms() + SUB_RECONNECT_MS;

    if (deadline >= 0 && deadline < until) until = deadline;
    for (;;) {
        int64_t left = until - cli_now_ms();
        if (cli_interrupted()) return CLI_ERR_INTR;
        if (left <= 0) break;
        poll(NULL, 0, (int)left);
    }
    return deadline >= 0 && cli_now_ms() >= deadline ? CLI_TIMEOUT : CLI_OK;
}

/* A lost connection: say so, then connect again until it works, -W
 * passes, or the broker refuses. */
static int sub_reconnect(sub_ctx *s, int64_t deadline)
{
    bool sp = false;
    int rc;

    if (!s->o.quiet) fprintf(stderr, "secsub: %s; connecting again\n", cli_conn_error(s->c));
    for (;;) {
        cli_conn_free(s->c);
        s->c = NULL;
        if ((rc = sub_pause(deadline)) != CLI_OK) return rc;
        if (s->o.clean_session) {
            memset(s->qos2, 0, SUB_QOS2_MAX / 8); /* a new session: no PUBREL will come */
            s->nqos2 = 0;
        }
        rc = cli_conn_open(&s->c, &s->o, &sp);
        if (rc == CLI_OK) return sub_subscribe(s);
        if (!sub_retryable(rc)) return rc;
        if (s->o.debug) cli_debug_line("secsub: %s", cli_conn_error(s->c));
    }
}

static int sub_run(sub_ctx *s)
{
    const int64_t deadline = s->timeout_s > 0 ? cli_now_ms() + s->timeout_s * 1000 : -1;
    mqtt_header h;
    int rc = sub_subscribe(s);

    for (;;) {
        if (rc == CLI_OK) rc = sub_loop(s, deadline);
        if (!sub_retryable(rc)) break;
        rc = sub_reconnect(s, deadline);
    }
    if (rc != CLI_OK) return rc;
    /* -C reached: finish the QoS 2 flows we started (bounded wait) */
    const int64_t until = cli_now_ms() + SUB_QOS2_DRAIN_MS;
    int64_t left;
    while (s->nqos2 > 0 && (left = until - cli_now_ms()) > 0) {
        rc = cli_wait(s->c, (int)left, -1, &h);
        if (rc == CLI_TIMEOUT) break;
        if (rc < 0) return rc;
        if ((rc = sub_handle(s, &h)) < 0) return rc;
    }
    return CLI_OK;
}

static void sub_free(sub_ctx *s)
{
    free(s->qos2);
    free(s->topics);
    free(s->filter_out);
    free(s->unsub);
}

int main(int argc, char **argv)
{
    sub_ctx s;
    bool sp = false;
    int rc, status;

    memset(&s, 0, sizeof(s));
    cli_opts_init(&s.o, "secsub");
    if ((status = sub_parse(&s, argc, argv)) >= 0) {
        sub_free(&s);
        return status;
    }
    s.qos2 = calloc(SUB_QOS2_MAX / 8, 1);
    if (s.qos2 == NULL) {
        sub_free(&s);
        fprintf(stderr, "secsub: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    cli_signals_install();

    rc = cli_conn_open(&s.c, &s.o, &sp);
    if (rc == CLI_OK) rc = sub_run(&s);
    if (rc == CLI_TIMEOUT) {
        /* -W expired: a normal way to end, with its own status */
        if (!s.o.quiet)
            fprintf(stderr, "secsub: timed out after %ld second%s (-W)\n", s.timeout_s,
                    s.timeout_s == 1 ? "" : "s");
        cli_conn_close(s.c);
        status = CLI_EXIT_TIMEOUT;
    } else {
        status = cli_exit_code(s.c, rc);
        if (rc < 0 && rc != CLI_ERR_INTR && !s.o.quiet)
            fprintf(stderr, "secsub: %s\n", cli_conn_error(s.c));
        if (rc >= 0 || rc == CLI_ERR_INTR)
            cli_conn_close(s.c);
        else
            cli_conn_free(s.c);
    }
    sub_free(&s);
    return status;
}

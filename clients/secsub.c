/*
 * secsub -- subscribe and print MQTT messages, with mosquitto_sub's flags.
 *
 * Every message is written and flushed on its own, so nothing is lost when
 * stdout is a pipe. QoS 1 messages are acknowledged after they are printed;
 * QoS 2 messages are printed once (a re-sent PUBLISH with a packet id still
 * awaiting PUBREL is not printed again) and completed with PUBREC / PUBCOMP.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clients/core/client.h"

#define SUB_QOS2_MAX 65536
#define SUB_QOS2_DRAIN_MS 2000 /* after -C: wait this long for pending PUBRELs */

typedef struct {
    cli_opts o;
    cli_conn *c;
    const char **topics;
    unsigned ntopics;
    bool verbose;
    bool no_newline;
    bool skip_retained;
    bool persistent;
    long count;     /* -C, 0 = unlimited */
    long timeout_s; /* -W, 0 = none */
    long received;
    uint16_t sub_id;
    bool subscribed;
    uint8_t *qos2; /* bitmap: packet ids awaiting PUBREL */
    unsigned nqos2;
} sub_ctx;

static void sub_usage(FILE *out)
{
    fputs("secsub: subscribe to MQTT topics and print the messages (flags as mosquitto_sub)\n"
          "Usage: secsub -t FILTER [-t FILTER ...] [options]\n"
          "Subscription:\n"
          "  -t, --topic FILTER       topic filter to subscribe to (repeatable; + and # allowed)\n"
          "  -q, --qos 0|1|2          maximum QoS of the subscriptions\n"
          "  -c, --disable-clean-session\n"
          "                           persistent session: the broker keeps the subscriptions\n"
          "                           and queues QoS 1/2 messages while we are away (needs -i)\n"
          "Output:\n"
          "  -v, --verbose            print \"topic payload\" instead of just the payload\n"
          "  -N                       do not add a newline after each payload\n"
          "  -R, --no-retained        skip stale retained messages (those with retain=1)\n"
          "  -C, --count N            exit (status 0) after N messages\n"
          "  -W, --timeout SECONDS    exit with status 27 if still running after SECONDS\n"
          "                           (counted from the broker's CONNACK)\n",
          out);
    cli_opts_usage_common(out);
    fputs("Exit status: 0 success (-C reached, or interrupted); 1..5 the broker's CONNACK\n"
          "refusal code; 27 -W timeout; 64 bad usage; 69 any other failure (one line on\n"
          "stderr says why).\n",
          out);
}

static int sub_usage_error(const char *msg)
{
    fprintf(stderr, "secsub: %s (see secsub --help)\n", msg);
    return CLI_EXIT_USAGE;
}

/* Parse argv; returns -1 to continue, otherwise the exit status. */
static int sub_parse(sub_ctx *s, int argc, char **argv)
{
    char err[512];
    int i;

    s->topics = calloc((size_t)argc, sizeof(*s->topics));
    if (s->topics == NULL) return sub_usage_error("out of memory");
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        int rc;

        if (strcmp(a, "--help") == 0) {
            sub_usage(stdout);
            return 0;
        }
        rc = cli_opts_parse_common(&s->o, argc, argv, &i, err, sizeof(err));
        if (rc < 0) return sub_usage_error(err);
        if (rc == 1) continue;
        if (strcmp(a, "-t") == 0 || strcmp(a, "--topic") == 0 || strcmp(a, "-C") == 0 ||
            strcmp(a, "--count") == 0 || strcmp(a, "-W") == 0 || strcmp(a, "--timeout") == 0) {
            if (i + 1 >= argc) {
                snprintf(err, sizeof(err), "%s needs a value", a);
                return sub_usage_error(err);
            }
            const char *v = argv[++i];
            if (a[1] == 't' || strcmp(a, "--topic") == 0) {
                if (strlen(v) > 65535 ||
                    mqtt_topic_filter_validate((const uint8_t *)v, strlen(v)) != MQTT_OK) {
                    snprintf(err, sizeof(err), "-t '%s' is not a valid topic filter", v);
                    return sub_usage_error(err);
                }
                s->topics[s->ntopics++] = v;
            } else if (a[1] == 'C' || strcmp(a, "--count") == 0) {
                if (!cli_parse_int(v, 1, 2000000000, &s->count))
                    return sub_usage_error("-C needs a message count >= 1");
            } else if (!cli_parse_int(v, 1, 2000000, &s->timeout_s)) {
                return sub_usage_error("-W needs seconds >= 1");
            }
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            s->verbose = true;
        } else if (strcmp(a, "-N") == 0) {
            s->no_newline = true;
        } else if (strcmp(a, "-R") == 0 || strcmp(a, "--no-retained") == 0) {
            s->skip_retained = true;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--disable-clean-session") == 0) {
            s->persistent = true;
        } else {
            snprintf(err, sizeof(err), "unknown option '%s'", a);
            return sub_usage_error(err);
        }
    }
    if (s->ntopics == 0) return sub_usage_error("give at least one -t FILTER");
    if (s->persistent && s->o.id == NULL)
        return sub_usage_error("-c needs a client id (-i): the session is stored under it");
    s->o.clean_session = !s->persistent;
    if (cli_opts_finish(&s->o, err, sizeof(err)) != CLI_OK) return sub_usage_error(err);
    return -1;
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

/* Print one message and count it. */
static int sub_deliver(sub_ctx *s, const mqtt_publish *m)
{
    if (s->skip_retained && m->retain) return CLI_OK;
    if (s->count > 0 && s->received >= s->count) return CLI_OK;
    if (s->verbose) {
        fwrite(m->topic.ptr, 1, m->topic.len, stdout);
        fputc(' ', stdout);
    }
    if (m->payload_len > 0) fwrite(m->payload, 1, m->payload_len, stdout);
    if (!s->no_newline) fputc('\n', stdout);
    if (fflush(stdout) != 0 || ferror(stdout))
        return cli_conn_fail(s->c, CLI_ERR_IO, "cannot write to stdout: %s", strerror(errno));
    s->received++;
    return CLI_OK;
}

static bool sub_done(const sub_ctx *s)
{
    return s->count > 0 && s->received >= s->count;
}

/* React to one packet from the broker. */
static int sub_handle(sub_ctx *s, const mqtt_header *h)
{
    uint16_t id;
    int rc;

    switch (h->type) {
    case MQTT_PUBLISH: {
        mqtt_publish m;
        if ((rc = cli_decode_publish(&s->o, h, &m, NULL)) != MQTT_OK)
            return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "malformed PUBLISH from the broker: %s",
                                 mqtt_strerror(rc));
        /* past -C, leave QoS 1/2 messages unacknowledged: a persistent
         * session gets them again next time */
        if (sub_done(s) && m.qos > 0) return CLI_OK;
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
    case MQTT_PUBREL:
        if (cli_decode_ack(&s->o, h, &id) != MQTT_OK)
            return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "malformed PUBREL from the broker");
        qos2_set(s, id, false);
        return cli_send_ack(s->c, MQTT_PUBCOMP, id);
    case MQTT_SUBACK: {
        mqtt_suback a;
        unsigned i, denied = 0;
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
                if (denied < a.count)
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
    case MQTT_CONNACK:
        return cli_conn_fail(s->c, CLI_ERR_PROTOCOL, "the broker sent a second CONNACK");
    default:
        return CLI_OK;
    }
}

static int sub_run(sub_ctx *s)
{
    const int64_t deadline = s->timeout_s > 0 ? cli_now_ms() + s->timeout_s * 1000 : -1;
    mqtt_header h;
    int rc;

    s->sub_id = cli_next_packet_id(s->c);
    rc = cli_send_subscribe(s->c, s->sub_id, s->topics, s->ntopics, s->o.qos);
    if (rc < 0) return rc;
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
    /* -C reached: finish the QoS 2 flows we started (bounded wait) */
    {
        const int64_t until = cli_now_ms() + SUB_QOS2_DRAIN_MS;
        int64_t left;
        while (s->nqos2 > 0 && (left = until - cli_now_ms()) > 0) {
            rc = cli_wait(s->c, (int)left, -1, &h);
            if (rc == CLI_TIMEOUT) break;
            if (rc < 0) return rc;
            if ((rc = sub_handle(s, &h)) < 0) return rc;
        }
    }
    return CLI_OK;
}

int main(int argc, char **argv)
{
    sub_ctx s;
    bool sp = false;
    int rc, status;

    memset(&s, 0, sizeof(s));
    cli_opts_init(&s.o, "secsub");
    if ((status = sub_parse(&s, argc, argv)) >= 0) {
        free(s.topics);
        return status;
    }
    s.qos2 = calloc(SUB_QOS2_MAX / 8, 1);
    if (s.qos2 == NULL) {
        free(s.topics);
        fprintf(stderr, "secsub: out of memory\n");
        return CLI_EXIT_FAILURE;
    }
    cli_signals_install();

    rc = cli_conn_open(&s.c, &s.o, &sp);
    if (rc == CLI_OK) rc = sub_run(&s);
    if (rc == CLI_TIMEOUT) {
        /* -W expired: a normal way to end, with its own status */
        fprintf(stderr, "secsub: timed out after %ld second%s (-W)\n", s.timeout_s,
                s.timeout_s == 1 ? "" : "s");
        cli_conn_close(s.c);
        status = CLI_EXIT_TIMEOUT;
    } else {
        status = cli_exit_code(s.c, rc);
        if (rc < 0 && rc != CLI_ERR_INTR) fprintf(stderr, "secsub: %s\n", cli_conn_error(s.c));
        if (rc >= 0 || rc == CLI_ERR_INTR)
            cli_conn_close(s.c);
        else
            cli_conn_free(s.c);
    }
    free(s.qos2);
    free(s.topics);
    return status;
}

/*
 * opts.c -- the flags every client tool shares, spelled as mosquitto_pub and
 * mosquitto_sub spell them, so existing scripts keep working.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "clients/core/client.h"
#include "tls/tls.h"

void cli_opts_init(cli_opts *o, const char *prog)
{
    memset(o, 0, sizeof(*o));
    o->prog = prog;
    o->host = "localhost";
    o->keepalive = 60;
    o->protocol_level = 4;
    o->clean_session = true;
}

bool cli_parse_int(const char *s, long min, long max, long *out)
{
    char *end;
    long v;

    if (s == NULL || *s == '\0') return false;
    errno = 0;
    v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) return false;
    *out = v;
    return true;
}

/* Does argv[*i] match the short or long spelling? */
static bool opt_is(const char *arg, const char *shortname, const char *longname)
{
    return (shortname && strcmp(arg, shortname) == 0) || (longname && strcmp(arg, longname) == 0);
}

/* The value of a flag that takes one; NULL (and err set) when it is missing. */
static const char *opt_value(int argc, char **argv, int *i, char *err, size_t errlen)
{
    if (*i + 1 >= argc) {
        snprintf(err, errlen, "%s needs a value", argv[*i]);
        return NULL;
    }
    (*i)++;
    return argv[*i];
}

static int opt_int(int argc, char **argv, int *i, long min, long max, const char *what, int *dst,
                   char *err, size_t errlen)
{
    const char *flag = argv[*i];
    const char *v = opt_value(argc, argv, i, err, errlen);
    long n;

    if (v == NULL) return CLI_ERR_ARG;
    if (!cli_parse_int(v, min, max, &n)) {
        snprintf(err, errlen, "%s needs %s, not '%s'", flag, what, v);
        return CLI_ERR_ARG;
    }
    *dst = (int)n;
    return 1;
}

/* The common flags without a value: true when a was one. */
static bool opt_switch(cli_opts *o, const char *a)
{
    bool *flag = NULL;

    if (opt_is(a, NULL, "--will-retain"))
        flag = &o->will_retain;
    else if (opt_is(a, "-d", "--debug"))
        flag = &o->debug;
    else if (opt_is(a, NULL, "--insecure"))
        flag = &o->insecure, o->tls = true;
    else if (opt_is(a, NULL, "--quiet"))
        flag = &o->quiet;
    else if (opt_is(a, NULL, "--nodelay"))
        flag = &o->nodelay;
    if (flag == NULL) return false;
    *flag = true;
    return true;
}

/* -V 311 | mqttv311 | 31 | mqttv31; MQTT 5 is refused by name. */
static int opt_protocol_version(cli_opts *o, int argc, char **argv, int *i, char *err,
                                size_t errlen)
{
    const char *v = opt_value(argc, argv, i, err, errlen);

    if (v == NULL) return CLI_ERR_ARG;
    if (strcasecmp(v, "311") == 0 || strcasecmp(v, "mqttv311") == 0) {
        o->protocol_level = 4;
    } else if (strcasecmp(v, "31") == 0 || strcasecmp(v, "mqttv31") == 0) {
        o->protocol_level = 3;
    } else if (strcasecmp(v, "5") == 0 || strcasecmp(v, "mqttv5") == 0) {
        o->protocol_level = 5;
    } else {
        snprintf(err, errlen, "-V needs 5 (mqttv5), 311 (mqttv311) or 31 (mqttv31), not '%s'", v);
        return CLI_ERR_ARG;
    }
    return 1;
}

/* host[:port] or [v6]:port of -L, in place; 0 or -1. */
static int url_host_port(cli_opts *o, char *s, char *err, size_t errlen)
{
    char *port = NULL;

    if (*s == '[') {
        char *close = strchr(s, ']');
        if (close == NULL || (close[1] != '\0' && close[1] != ':')) return -1;
        *close = '\0';
        if (close[1] == ':') port = close + 2;
        s++;
    } else if ((port = strrchr(s, ':')) != NULL) {
        *port++ = '\0';
    }
    if (*s == '\0') return -1;
    o->host = s;
    if (port != NULL) {
        long n;
        if (!cli_parse_int(port, 1, 65535, &n)) {
            snprintf(err, errlen, "-L: '%s' is not a port number 1..65535", port);
            return -2;
        }
        o->port = (int)n;
    }
    return 0;
}

/* -L mqtt(s)://[user[:password]@]host[:port]/topic, as mosquitto reads it. */
static int opt_url(cli_opts *o, const char *v, char *err, size_t errlen)
{
    char *s = o->url_buf, *slash, *at;
    int rc;

    if (strlen(v) >= sizeof(o->url_buf)) {
        snprintf(err, errlen, "-L: the URL is longer than %zu bytes", sizeof(o->url_buf) - 1);
        return CLI_ERR_ARG;
    }
    strcpy(s, v);
    if (strncmp(s, "mqtt://", 7) == 0) {
        s += 7;
        o->port = 1883;
    } else if (strncmp(s, "mqtts://", 8) == 0) {
        s += 8;
        o->port = 8883;
        o->tls = true;
    } else {
        snprintf(err, errlen,
                 "-L needs mqtt://[user[:password]@]host[:port]/topic or mqtts://..., "
                 "not '%s'",
                 v);
        return CLI_ERR_ARG;
    }
    if ((slash = strchr(s, '/')) == NULL || slash[1] == '\0') {
        snprintf(err, errlen, "-L '%s': the topic is missing (mqtt://host/topic)", v);
        return CLI_ERR_ARG;
    }
    *slash = '\0';
    o->url_topic = slash + 1;
    if ((at = strrchr(s, '@')) != NULL) {
        char *colon;
        *at = '\0';
        if ((colon = strchr(s, ':')) != NULL) {
            *colon = '\0';
            o->password = colon + 1;
        }
        o->username = s;
        s = at + 1;
    }
    rc = url_host_port(o, s, err, errlen);
    if (rc == -1) snprintf(err, errlen, "-L '%s': no host name", v);
    return rc == 0 ? 1 : CLI_ERR_ARG;
}

int cli_opts_parse_common(cli_opts *o, int argc, char **argv, int *i, char *err, size_t errlen)
{
    const char *a = argv[*i];
    const char **str = NULL;
    bool tls_opt = false;

    if (opt_is(a, "-h", "--host"))
        str = &o->host;
    else if (opt_is(a, "-i", "--id"))
        str = &o->id;
    else if (opt_is(a, "-I", "--id-prefix"))
        str = &o->id_prefix;
    else if (opt_is(a, "-u", "--username"))
        str = &o->username;
    else if (opt_is(a, "-P", "--pw"))
        str = &o->password;
    else if (opt_is(a, NULL, "--cafile"))
        str = &o->cafile, tls_opt = true;
    else if (opt_is(a, NULL, "--capath"))
        str = &o->capath, tls_opt = true;
    else if (opt_is(a, NULL, "--cert"))
        str = &o->certfile, tls_opt = true;
    else if (opt_is(a, NULL, "--key"))
        str = &o->keyfile, tls_opt = true;
    else if (opt_is(a, NULL, "--tls-version"))
        str = &o->tls_version, tls_opt = true;
    else if (opt_is(a, NULL, "--ciphers"))
        str = &o->ciphers, tls_opt = true;
    else if (opt_is(a, NULL, "--keylog"))
        str = &o->keylog;
    else if (opt_is(a, NULL, "--will-topic"))
        str = &o->will_topic;
    else if (opt_is(a, NULL, "--will-payload"))
        str = &o->will_payload;
    else if (opt_is(a, "-A", NULL))
        str = &o->bind_address;

    if (str != NULL) {
        const char *v = opt_value(argc, argv, i, err, errlen);
        if (v == NULL) return CLI_ERR_ARG;
        *str = v;
        if (tls_opt) o->tls = true;
        return 1;
    }
    if (opt_is(a, "-p", "--port"))
        return opt_int(argc, argv, i, 1, 65535, "a port number 1..65535", &o->port, err, errlen);
    if (opt_is(a, "-k", "--keepalive"))
        return opt_int(argc, argv, i, 0, 65535, "seconds 0..65535", &o->keepalive, err, errlen);
    if (opt_is(a, "-q", "--qos"))
        return opt_int(argc, argv, i, 0, 2, "a QoS of 0, 1 or 2", &o->qos, err, errlen);
    if (opt_is(a, NULL, "--will-qos"))
        return opt_int(argc, argv, i, 0, 2, "a QoS of 0, 1 or 2", &o->will_qos, err, errlen);
    if (opt_switch(o, a)) return 1;
    if (opt_is(a, "-D", "--property"))
        return cli_opts_parse_property(o, argc, argv, i, err, errlen);
    if (opt_is(a, "-x", "--session-expiry-interval")) {
        const char *v = opt_value(argc, argv, i, err, errlen);
        long n;
        if (v == NULL) return CLI_ERR_ARG;
        if (!cli_parse_int(v, -1, 4294967295L, &n)) {
            snprintf(err, errlen, "-x needs seconds 0..4294967295 or -1 (never), not '%s'", v);
            return CLI_ERR_ARG;
        }
        o->session_expiry = n < 0 ? 0xFFFFFFFFu : (uint32_t)n;
        o->session_expiry_set = true;
        return 1;
    }
    if (opt_is(a, "-L", "--url")) {
        const char *v = opt_value(argc, argv, i, err, errlen);
        return v == NULL ? CLI_ERR_ARG : opt_url(o, v, err, errlen);
    }
    if (opt_is(a, "-V", "--protocol-version"))
        return opt_protocol_version(o, argc, argv, i, err, errlen);
    return 0;
}

int cli_opts_finish(cli_opts *o, char *err, size_t errlen)
{
    if (o->port == 0) o->port = o->tls ? 8883 : 1883;
    if (o->nprops && o->protocol_level != 5) {
        /* -x alone is accepted and not sent below 5, as mosquitto does */
        snprintf(err, errlen, "-D: MQTT 5 properties need -V 5");
        return CLI_ERR_ARG;
    }
    if ((o->certfile == NULL) != (o->keyfile == NULL)) {
        snprintf(err, errlen, "--cert and --key must be given together");
        return CLI_ERR_ARG;
    }
    if (o->password != NULL && o->username == NULL && o->protocol_level != 5) {
        snprintf(err, errlen, "-P needs -u: MQTT sends no password without a user name");
        return CLI_ERR_ARG;
    }
    if (o->will_topic == NULL && (o->will_payload != NULL || o->will_qos != 0 || o->will_retain)) {
        snprintf(err, errlen, "--will-payload/--will-qos/--will-retain need --will-topic");
        return CLI_ERR_ARG;
    }
    if (o->will_topic != NULL && mqtt_topic_name_validate((const uint8_t *)o->will_topic,
                                                          strlen(o->will_topic)) != MQTT_OK) {
        snprintf(err, errlen, "--will-topic '%s' is not a valid topic name", o->will_topic);
        return CLI_ERR_ARG;
    }
    if (o->id != NULL && o->id[0] == '\0') {
        snprintf(err, errlen, "-i needs a non-empty client id");
        return CLI_ERR_ARG;
    }
    if (o->id != NULL && strlen(o->id) > 65535) {
        snprintf(err, errlen, "-i: client id longer than 65535 bytes");
        return CLI_ERR_ARG;
    }
    if (o->id == NULL) {
        /* prog-PID-host, cut at 23 bytes: the longest id MQTT 3.1 brokers must accept */
        char host[32] = "";
        const char *prefix = o->id_prefix ? o->id_prefix : o->prog;
        gethostname(host, sizeof(host) - 1);
        host[sizeof(host) - 1] = '\0';
        if (o->id_prefix)
            snprintf(o->id_buf, sizeof(o->id_buf), "%.40s%ld", prefix, (long)getpid());
        else
            snprintf(o->id_buf, sizeof(o->id_buf), "%.40s-%ld-%s", prefix, (long)getpid(), host);
        if (strlen(o->id_buf) > 23) o->id_buf[23] = '\0';
        /* never end on the separator */
        size_t n = strlen(o->id_buf);
        while (n > 0 && o->id_buf[n - 1] == '-')
            o->id_buf[--n] = '\0';
        o->id = o->id_buf;
    }
    if (o->keylog == NULL) {
        const char *env = getenv("SSLKEYLOGFILE");
        if (env != NULL && env[0] != '\0') o->keylog = env;
    }
    return CLI_OK;
}

void cli_print_version(FILE *out, const char *prog)
{
    fprintf(out, "%s version %s (MQTT 5.0, 3.1.1 and 3.1, %s)\n", prog, CLI_VERSION,
            tls_library_version());
}

void cli_opts_usage_common(FILE *out)
{
    fputs("Connection:\n"
          "  -h, --host HOST          broker host name or address (default localhost)\n"
          "  -p, --port PORT          broker port (default 1883, 8883 with any TLS option)\n"
          "  -i, --id ID              client id (default PROG-PID-HOST)\n"
          "  -I, --id-prefix PREFIX   client id = PREFIX followed by the process id\n"
          "  -u, --username USER      user name\n"
          "  -P, --pw PASSWORD        password (needs -u)\n"
          "  -k, --keepalive SECONDS  keepalive interval, 0 = off (default 60)\n"
          "  -q, --qos 0|1|2          quality of service (default 0)\n"
          "  -V, --protocol-version V 311 or mqttv311 (default), 31 or mqttv31 (MQIsdp),\n"
          "                           5 or mqttv5\n"
          "  -D, --property CMD PROP VALUE  MQTT 5 property (mosquitto's names) for CMD:\n"
          "                           connect, publish, subscribe, unsubscribe, disconnect,\n"
          "                           will; user-property takes NAME VALUE (needs -V 5)\n"
          "  -d, --debug              print every packet sent and received\n"
          "  -L, --url URL            mqtt://[USER[:PASSWORD]@]HOST[:PORT]/TOPIC, or mqtts://\n"
          "                           for TLS (port 8883): host, port, user and topic at once\n"
          "  -A ADDRESS               bind the socket to this local address\n"
          "  -x SECONDS               MQTT 5 session expiry interval, -1 = never; accepted\n"
          "                           and not sent below -V 5, as mosquitto does\n"
          "  --nodelay                disable Nagle's algorithm (always off here)\n"
          "  --quiet                  print no runtime errors (usage errors still)\n"
          "Will:\n"
          "  --will-topic TOPIC       publish a will message on TOPIC if we vanish\n"
          "  --will-payload TEXT      payload of the will (default empty)\n"
          "  --will-qos 0|1|2         QoS of the will (default 0)\n"
          "  --will-retain            retain the will\n"
          "TLS (any of these turns TLS on):\n"
          "  --cafile FILE            CA certificate(s) that signed the broker's certificate\n"
          "  --capath DIR             directory of CA certificates\n"
          "  --cert FILE              client certificate (mutual TLS; needs --key)\n"
          "  --key FILE               private key of --cert\n"
          "  --insecure               do not check that the certificate names the host\n"
          "                           (the chain is still verified)\n"
          "  --tls-version VERSION    use only this version: tlsv1.2 (tlsv1.1, tlsv1.3 where\n"
          "                           the TLS library has them); default: TLS 1.2\n"
          "  --ciphers LIST           ':'-separated cipher suites (OpenSSL or IANA names)\n"
          "  --keylog FILE            append TLS secrets in NSS key log format for\n"
          "                           Wireshark (the SSLKEYLOGFILE variable works too)\n"
          "Other:\n"
          "  --help                   this text\n"
          "  --version                the version and the TLS library\n",
          out);
}

/*
 * test_bridge_cfg.c -- the bridge configuration block (Mosquitto's keys and
 * defaults from mosquitto.conf(5)), its topic/prefix table and mappings, and
 * the reconnect delay schedule.
 */
#include "broker/bridge_cfg.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char err[512];

/* A block with the given lines ("key value" each); asserts each line's rc. */
static void cfg_lines(bridge_cfg *b, const char *const *lines)
{
    ck_assert_int_eq(bridge_cfg_init(b, "edge", err, sizeof err), 0);
    for (; *lines; lines++) {
        char key[64];
        const char *sp = strchr(*lines, ' ');
        ck_assert_ptr_nonnull(sp);
        snprintf(key, sizeof key, "%.*s", (int)(sp - *lines), *lines);
        ck_assert_msg(bridge_cfg_is_key(key), "%s is not a bridge key", key);
        ck_assert_msg(bridge_cfg_line(b, key, sp + 1, err, sizeof err) == 0, "%s: %s", *lines, err);
    }
}

/* One line after "connection edge": returns its rc, err holds the reason. */
static int one_line(const char *line)
{
    bridge_cfg b;
    ck_assert_int_eq(bridge_cfg_init(&b, "edge", err, sizeof err), 0);
    char key[64];
    const char *sp = strchr(line, ' ');
    ck_assert_ptr_nonnull(sp);
    snprintf(key, sizeof key, "%.*s", (int)(sp - line), line);
    err[0] = 0;
    int rc = bridge_cfg_line(&b, key, sp + 1, err, sizeof err);
    bridge_cfg_free(&b);
    return rc;
}

START_TEST(defaults_follow_mosquitto)
{
    bridge_cfg b;
    const char *lines[] = {"address broker.example", "topic sensors/#", NULL};
    cfg_lines(&b, lines);
    ck_assert_int_eq(bridge_cfg_finish(&b, "gw1", err, sizeof err), 0);
    ck_assert_str_eq(b.name, "edge");
    ck_assert_uint_eq(b.naddrs, 1);
    ck_assert_str_eq(b.addrs[0].host, "broker.example");
    ck_assert_uint_eq(b.addrs[0].port, 1883);
    ck_assert(!b.round_robin);
    /* the id Mosquitto 2.0 really sends is HOSTNAME.NAME */
    ck_assert_str_eq(b.remote_clientid, "gw1.edge");
    ck_assert_str_eq(b.local_clientid, "local.gw1.edge");
    ck_assert_str_eq(b.notification_topic, "$SYS/broker/connection/gw1.edge/state");
    ck_assert(!b.cleansession);
    ck_assert(!b.local_cleansession);
    ck_assert_uint_eq(b.keepalive_interval, 60);
    ck_assert(!b.restart_constant);
    ck_assert_uint_eq(b.restart_base, 5);
    ck_assert_uint_eq(b.restart_cap, 30);
    ck_assert_int_eq(b.start_type, BRIDGE_START_AUTOMATIC);
    ck_assert_uint_eq(b.threshold, 10);
    ck_assert_uint_eq(b.idle_timeout, 60);
    ck_assert(b.try_private && b.notifications && !b.notifications_local_only);
    ck_assert_uint_eq(b.protocol_version, 4);
    ck_assert(b.outgoing_retain && b.attempt_unsubscribe && !b.insecure);
    ck_assert_uint_eq(b.max_packet_size, 0);
    ck_assert_ptr_null(b.cafile);
    ck_assert_ptr_null(b.remote_username);
    ck_assert_uint_eq(b.ntopics, 1);
    ck_assert_int_eq(b.topics[0].dir, BRIDGE_OUT);
    ck_assert_uint_eq(b.topics[0].qos, 0);
    ck_assert_str_eq(b.topics[0].local_filter, "sensors/#");
    ck_assert_str_eq(b.topics[0].remote_filter, "sensors/#");
    bridge_cfg_free(&b);
}
END_TEST

START_TEST(every_key_sets_its_field)
{
    bridge_cfg b;
    const char *lines[] = {"addresses a.example:8883 [::1]:1884 ::1:1885 10.0.0.1 # spare",
                           "round_robin true",
                           "topic # both 2 local/topic/ remote/topic/",
                           "clientid old-style-id",
                           "local_clientid here",
                           "username u1",
                           "password p w d",
                           "cleansession true",
                           "local_cleansession false",
                           "keepalive_interval 5",
                           "restart_timeout 20",
                           "start_type lazy",
                           "threshold 100",
                           "idle_timeout 300",
                           "try_private false",
                           "notifications false",
                           "notifications_local_only true",
                           "notification_topic bridges/edge/state",
                           "bridge_protocol_version mqttv31",
                           "bridge_outgoing_retain false",
                           "bridge_max_packet_size 65536",
                           "bridge_attempt_unsubscribe false",
                           "bridge_cafile /dev/null",
                           "bridge_capath /tmp",
                           "bridge_certfile /dev/null",
                           "bridge_keyfile /dev/null",
                           "bridge_insecure true",
                           "bridge_tls_version tlsv1.2",
                           "bridge_ciphers ECDHE-ECDSA-AES128-GCM-SHA256",
                           "bridge_keylog_file /tmp/bridge.keys",
                           NULL};
    cfg_lines(&b, lines);
    ck_assert_int_eq(bridge_cfg_finish(&b, "gw1", err, sizeof err), 0);
    ck_assert_uint_eq(b.naddrs, 4);
    ck_assert_str_eq(b.addrs[0].host, "a.example");
    ck_assert_uint_eq(b.addrs[0].port, 8883);
    ck_assert_str_eq(b.addrs[1].host, "::1");
    ck_assert_uint_eq(b.addrs[1].port, 1884);
    ck_assert_str_eq(b.addrs[2].host, "::1");
    ck_assert_uint_eq(b.addrs[2].port, 1885);
    ck_assert_str_eq(b.addrs[3].host, "10.0.0.1");
    ck_assert_uint_eq(b.addrs[3].port, 1883);
    ck_assert(b.round_robin && b.cleansession && !b.local_cleansession);
    ck_assert_str_eq(b.remote_clientid, "old-style-id");
    ck_assert_str_eq(b.local_clientid, "here");
    ck_assert_str_eq(b.remote_username, "u1");
    ck_assert_str_eq(b.remote_password, "p w d");
    ck_assert_uint_eq(b.keepalive_interval, 5);
    ck_assert(b.restart_constant);
    ck_assert_uint_eq(b.restart_base, 20);
    ck_assert_int_eq(b.start_type, BRIDGE_START_LAZY);
    ck_assert_uint_eq(b.threshold, 100);
    ck_assert_uint_eq(b.idle_timeout, 300);
    ck_assert(!b.try_private && !b.notifications && b.notifications_local_only);
    ck_assert_str_eq(b.notification_topic, "bridges/edge/state");
    ck_assert_uint_eq(b.protocol_version, 3);
    ck_assert(!b.outgoing_retain && !b.attempt_unsubscribe && b.insecure);
    ck_assert_uint_eq(b.max_packet_size, 65536);
    ck_assert_str_eq(b.cafile, "/dev/null");
    ck_assert_str_eq(b.capath, "/tmp");
    ck_assert_str_eq(b.tls_version, "tlsv1.2");
    ck_assert_str_eq(b.ciphers, "ECDHE-ECDSA-AES128-GCM-SHA256");
    ck_assert_str_eq(b.keylog_file, "/tmp/bridge.keys");
    ck_assert_int_eq(b.topics[0].dir, BRIDGE_BOTH);
    ck_assert_uint_eq(b.topics[0].qos, 2);
    bridge_cfg_free(&b);
}
END_TEST

START_TEST(local_cleansession_follows_cleansession)
{
    bridge_cfg b;
    const char *lines[] = {"address h", "topic a", "cleansession true", NULL};
    cfg_lines(&b, lines);
    ck_assert_int_eq(bridge_cfg_finish(&b, "gw", err, sizeof err), 0);
    ck_assert(b.local_cleansession);
    bridge_cfg_free(&b);
    const char *lines2[] = {"address h", "topic a", "restart_timeout 10 60", NULL};
    cfg_lines(&b, lines2);
    ck_assert(!b.restart_constant);
    ck_assert_uint_eq(b.restart_base, 10);
    ck_assert_uint_eq(b.restart_cap, 60);
    bridge_cfg_free(&b);
}
END_TEST

/* Lines that are valid on their own. */
static const char *const good_lines[] = {
    "address h",
    "address h:1",
    "address h:65535",
    "address [fe80::1]",
    "topic a/b",
    "topic # in",
    "topic + out 1",
    "topic a/# both 2 \"\" \"\"",
    "topic a/# IN 0 l/ r/",
    "topic a in 0 l/",
    "topic \"\" out 0 local/one remote/one",
    "topic +/x out 0 \"\" r/",
    "topic a out 1 # trailing comment",
    "bridge_tls_version tlsv1.3",
    "bridge_max_packet_size 0",
    "bridge_max_packet_size 268435460",
    "keepalive_interval 65535",
    "start_type once",
    "start_type automatic",
    "restart_timeout 1 1",
    NULL,
};

START_TEST(good_line_table)
{
    for (const char *const *l = good_lines; *l; l++)
        ck_assert_msg(one_line(*l) == 0, "'%s' refused: %s", *l, err);
}
END_TEST

/* Lines refused, with words the reason must contain. */
static const struct {
    const char *line, *words;
} bad_lines[] = {
    {"address h:0", "invalid port"},
    {"address h:65536", "invalid port"},
    {"address h:12x", "invalid port"},
    {"address h:", "invalid port"},
    {"address :1883", "no host"},
    {"address [::1", "closing ']'"},
    {"address [::1]x", "':PORT'"},
    {"address # only a comment", "expected host"},
    {"topic a sideways", "direction must be out, in or both"},
    {"topic a out 3", "QoS must be 0, 1 or 2"},
    {"topic a out one", "QoS must be 0, 1 or 2"},
    {"topic a out 1 l/ r/ extra", "too many words"},
    {"topic \"a b\" out", "quoted patterns"},
    {"topic \"\"", "needs both a local and a remote prefix"},
    {"topic \"\" out 0 l/ \"\"", "needs both a local and a remote prefix"},
    {"topic \"\" out 0 \"\" r/", "needs both a local and a remote prefix"},
    {"topic \"\" out 0 \"\" \"\"", "needs both a local and a remote prefix"},
    {"topic a out 0 l/+/ r/", "local prefix 'l/+/' must be a valid topic name"},
    {"topic a out 0 l/ r/#", "remote prefix 'r/#' must be a valid topic name"},
    {"topic +/x out 0 l r/", "'l+/x', which is not a valid topic filter"},
    {"topic #/a", "'#/a', which is not a valid topic filter"},
    {"topic x# out 0 \"\" \"\"", "not a valid topic filter"},
    {"keepalive_interval 4", "out of range (5..65535)"},
    {"keepalive_interval 65536", "out of range"},
    {"keepalive_interval -1", "not a number"},
    {"restart_timeout 0", "out of range"},
    {"restart_timeout 30 10", "cap 10 is lower than the base 30"},
    {"restart_timeout 1 2 3", "expected BASE CAP"},
    {"restart_timeout ten", "not a number"},
    {"start_type manual", "not supported, by Mosquitto either"},
    {"start_type Lazy", "expected automatic, lazy or once"},
    {"threshold 0", "out of range"},
    {"idle_timeout 0", "out of range"},
    {"cleansession yes", "expected true or false"},
    {"round_robin 1", "expected true or false"},
    {"notification_topic a/+/state", "not a valid topic name"},
    {"bridge_protocol_version mqttv5", "expected mqttv50, mqttv311 or mqttv31"},
    {"bridge_protocol_version MQTTV50", "expected mqttv50"},
    {"bridge_max_packet_size 268435461", "out of range"},
    {"bridge_max_queued_messages 100000001", "out of range"},
    {"bridge_max_queued_bytes 4294967296", "out of range"},
    {"bridge_max_queued_bytes -1", "not a number"},
    {"bridge_tls_version tlsv1.0", "expected tlsv1.1, tlsv1.2 or tlsv1.3"},
    {"bridge_cafile /nonexistent/ca.pem", "cannot read /nonexistent/ca.pem"},
    {"bridge_capath /nonexistent", "cannot read"},
    {"bridge_identity id", "TLS-PSK is not supported"},
    {"bridge_psk 00ff", "use bridge_certfile"},
    {"bridge_alpn x", "ALPN is not supported"},
    {"bridge_require_ocsp true", "OCSP is not supported"},
    {"bridge_bind_address 10.0.0.2", "does not support"},
    {"local_username u", "does not support"},
    {"local_password p", "does not support"},
    {"remote_clientid \xc3\x28", "not valid UTF-8"},
};

/* ours: the bridge's own queue limits, with their defaults */
START_TEST(queue_limit_keys)
{
    bridge_cfg b;
    const char *none[] = {NULL};
    cfg_lines(&b, none);
    ck_assert_uint_eq(b.max_queued_messages, 0); /* the broker's max_queued_messages */
    ck_assert_uint_eq(b.max_queued_bytes, 256u * 1024 * 1024);
    bridge_cfg_free(&b);
    const char *lines[] = {"bridge_max_queued_messages 5000", "bridge_max_queued_bytes 0", NULL};
    cfg_lines(&b, lines);
    ck_assert_uint_eq(b.max_queued_messages, 5000);
    ck_assert_uint_eq(b.max_queued_bytes, 0);
    bridge_cfg_free(&b);
}
END_TEST

/* ---- bridge_cfg_same (SIGHUP) ---- */

static void cfg_finished(bridge_cfg *b, const char *const *lines)
{
    cfg_lines(b, lines);
    ck_assert_msg(bridge_cfg_finish(b, "gw1", err, sizeof err) == 0, "%s", err);
}

/* ... and these after a base block with TLS on. */
static const char *const tls_changes[] = {"bridge_tls_version tlsv1.3", "bridge_ciphers X",
                                          "bridge_insecure true",       "bridge_keylog_file /tmp/k",
                                          "bridge_capath /tmp",         NULL};

/* Each line after the base block changes the bridge. */
static const char *const changes[] = {"round_robin true",
                                      "remote_clientid other",
                                      "local_clientid other",
                                      "remote_username u",
                                      "cleansession true",
                                      "local_cleansession true",
                                      "keepalive_interval 30",
                                      "restart_timeout 7",
                                      "restart_timeout 5 60",
                                      "start_type lazy",
                                      "start_type once",
                                      "threshold 11",
                                      "idle_timeout 61",
                                      "try_private false",
                                      "notifications false",
                                      "notifications_local_only true",
                                      "notification_topic n/t",
                                      "bridge_protocol_version mqttv50",
                                      "bridge_outgoing_retain false",
                                      "bridge_attempt_unsubscribe false",
                                      "bridge_max_packet_size 1000",
                                      "bridge_max_queued_messages 7",
                                      "bridge_max_queued_bytes 7",
                                      "bridge_cafile /dev/null",
                                      "bridge_capath /tmp",
                                      "topic b/# out 1",
                                      NULL};

START_TEST(same_and_changed)
{
    const char *base[] = {"address h:1883", "topic a/# out 1", NULL};
    bridge_cfg a, b;
    cfg_finished(&a, base);
    cfg_finished(&b, base);
    ck_assert(bridge_cfg_same(&a, &b));
    bridge_cfg_free(&b);
    for (const char *const *c = changes; *c; c++) {
        const char *lines[] = {"address h:1883", "topic a/# out 1", *c, NULL};
        cfg_finished(&b, lines);
        ck_assert_msg(!bridge_cfg_same(&a, &b), "'%s' not seen as a change", *c);
        bridge_cfg_free(&b);
    }
    const char *const blocks[][4] = {
        {"address h:1884", "topic a/# out 1", NULL},
        {"address h2:1883", "topic a/# out 1", NULL},
        {"address h:1883 h:1884", "topic a/# out 1", NULL},
        {"address h:1883", "topic a/# out 2", NULL},
        {"address h:1883", "topic a/# in 1", NULL},
        {"address h:1883", "topic a/# out 1 l/ r/", NULL},
        {"address h:1883", "topic a/# out 1 \"\" r/", NULL},
    };
    for (size_t i = 0; i < sizeof blocks / sizeof blocks[0]; i++) {
        cfg_finished(&b, blocks[i]);
        ck_assert_msg(!bridge_cfg_same(&a, &b), "'%s' / '%s' not seen as a change", blocks[i][0],
                      blocks[i][1]);
        bridge_cfg_free(&b);
    }
    bridge_cfg_free(&a);
    const char *tls[] = {"address h:1883", "topic a/# out 1", "bridge_cafile /dev/null", NULL};
    cfg_finished(&a, tls);
    for (const char *const *c = tls_changes; *c; c++) {
        const char *lines[] = {"address h:1883", "topic a/# out 1", "bridge_cafile /dev/null", *c,
                               NULL};
        cfg_finished(&b, lines);
        ck_assert_msg(!bridge_cfg_same(&a, &b), "'%s' not seen as a change", *c);
        bridge_cfg_free(&b);
    }
    bridge_cfg_free(&a);
    const char *user[] = {"address h:1883", "topic a/# out 1", "remote_username u", NULL};
    const char *pass[] = {"address h:1883", "topic a/# out 1", "remote_username u",
                          "remote_password p", NULL};
    cfg_finished(&a, user);
    cfg_finished(&b, pass);
    ck_assert(!bridge_cfg_same(&a, &b));
    bridge_cfg_free(&a);
    bridge_cfg_free(&b);
}
END_TEST

START_TEST(protocol_versions)
{
    bridge_cfg b;
    const char *v5[] = {"bridge_protocol_version mqttv50", NULL};
    cfg_lines(&b, v5);
    ck_assert_uint_eq(b.protocol_version, 5);
    bridge_cfg_free(&b);
    const char *v4[] = {"bridge_protocol_version mqttv311", NULL};
    cfg_lines(&b, v4);
    ck_assert_uint_eq(b.protocol_version, 4);
    bridge_cfg_free(&b);
}
END_TEST

START_TEST(bad_line_table)
{
    for (size_t i = 0; i < sizeof bad_lines / sizeof bad_lines[0]; i++) {
        ck_assert_msg(one_line(bad_lines[i].line) == BRIDGE_CFG_ERR, "'%s' accepted",
                      bad_lines[i].line);
        ck_assert_msg(strstr(err, bad_lines[i].words) != NULL, "'%s': got '%s', want '%s'",
                      bad_lines[i].line, err, bad_lines[i].words);
    }
}
END_TEST

START_TEST(keys_and_duplicates)
{
    ck_assert(bridge_cfg_is_key("topic"));
    ck_assert(bridge_cfg_is_key("bridge_psk"));
    ck_assert(!bridge_cfg_is_key("listener"));
    ck_assert(!bridge_cfg_is_key("log_type")); /* global keys stay global */
    bridge_cfg b;
    ck_assert_int_eq(bridge_cfg_init(&b, "edge", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b, "no_such_key", "1", err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "unknown bridge option 'no_such_key'"));
    ck_assert_int_eq(bridge_cfg_line(&b, "remote_username", "", err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "needs a value"));
    ck_assert_int_eq(bridge_cfg_line(&b, "address", "a", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b, "addresses", "b", err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "only one address line"));
    ck_assert_int_eq(bridge_cfg_line(&b, "remote_clientid", "x", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b, "clientid", "y", err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "given twice"));
    /* an identical topic line is skipped, as Mosquitto does */
    ck_assert_int_eq(bridge_cfg_line(&b, "topic", "a/# in 1", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b, "topic", "a/# in 1", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b, "topic", "a/# in 2", err, sizeof err), 0);
    ck_assert_uint_eq(b.ntopics, 2);
    bridge_cfg_free(&b);
    ck_assert_int_eq(bridge_cfg_init(&b, "two words", err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "one name without spaces"));
    bridge_cfg_free(&b);
}
END_TEST

/* Blocks refused when they end. */
static const struct {
    const char *lines[4];
    const char *words;
} bad_blocks[] = {
    {{"topic a", NULL}, "no address"},
    {{"address h", NULL}, "no topic line"},
    {{"address h", "topic a", "remote_password p", NULL}, "remote_password needs remote_username"},
    {{"address h", "topic a", "bridge_certfile /dev/null", NULL}, "given together"},
    {{"address h", "topic a", "bridge_insecure true", NULL}, "need bridge_cafile or bridge_capath"},
    {{"address h", "topic a", "bridge_keylog_file /tmp/k", NULL}, "need bridge_cafile"},
    {{"address h", "topic a", "bridge_protocol_version mqttv31", NULL}, "23 bytes MQTT 3.1"},
    {{"address h", "topic a", "remote_clientid a+b", NULL}, "set notification_topic"},
};

START_TEST(bad_block_table)
{
    for (size_t i = 0; i < sizeof bad_blocks / sizeof bad_blocks[0]; i++) {
        bridge_cfg b;
        cfg_lines(&b, bad_blocks[i].lines);
        /* a long host name makes the default id exceed MQTT 3.1's 23 bytes */
        int rc = bridge_cfg_finish(&b, "a-rather-long-gateway-hostname", err, sizeof err);
        ck_assert_msg(rc == BRIDGE_CFG_ERR, "block %zu accepted", i);
        ck_assert_msg(strstr(err, bad_blocks[i].words) != NULL, "block %zu: got '%s', want '%s'", i,
                      err, bad_blocks[i].words);
        bridge_cfg_free(&b);
    }
}
END_TEST

START_TEST(set_checks)
{
    bridge_cfg b[3];
    const char *l1[] = {"address h", "topic a", NULL};
    const char *l2[] = {"address h", "topic a", "local_clientid local.gw.edge", NULL};
    cfg_lines(&b[0], l1);
    ck_assert_int_eq(bridge_cfg_finish(&b[0], "gw", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_init(&b[1], "other", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b[1], "address", "h", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_line(&b[1], "topic", "a", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_finish(&b[1], "gw", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_check_set(b, 2, err, sizeof err), 0);
    cfg_lines(&b[2], l2); /* named edge again, and local.gw.edge again */
    ck_assert_int_eq(bridge_cfg_line(&b[2], "remote_clientid", "x", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_finish(&b[2], "gw", err, sizeof err), 0);
    ck_assert_int_eq(bridge_cfg_check_set(b, 3, err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "the name is used twice"));
    free(b[2].name);
    b[2].name = strdup("third");
    ck_assert_int_eq(bridge_cfg_check_set(b, 3, err, sizeof err), BRIDGE_CFG_ERR);
    ck_assert_ptr_nonnull(strstr(err, "local_clientid 'local.gw.edge' is not unique"));
    for (int i = 0; i < 3; i++)
        bridge_cfg_free(&b[i]);
}
END_TEST

/* mosquitto.conf(5)'s prefix table, row by row, with a message each way:
 * publish LOCAL on the local broker and the remote receives REMOTE, and the
 * reverse. */
static const struct {
    const char *topic_line;
    const char *local_filter, *remote_filter;
    const char *local, *remote;
} prefix_rows[] = {
    {"pattern both 0 L/ R/", "L/pattern", "R/pattern", "L/pattern", "R/pattern"},
    {"pattern both 0 L/ \"\"", "L/pattern", "pattern", "L/pattern", "pattern"},
    {"pattern both 0 \"\" R/", "pattern", "R/pattern", "pattern", "R/pattern"},
    {"pattern both 0 \"\" \"\"", "pattern", "pattern", "pattern", "pattern"},
    {"\"\" both 0 local remote", "local", "remote", "local", "remote"},
    /* "To remap an entire topic tree" */
    {"# both 2 local/topic/ remote/topic/", "local/topic/#", "remote/topic/#", "local/topic/a/b",
     "remote/topic/a/b"},
    /* prefixes are concatenated literally: no '/' is added */
    {"sensor/+ both 1 site1- cloud-", "site1-sensor/+", "cloud-sensor/+", "site1-sensor/t",
     "cloud-sensor/t"},
    {"+/temp both 0 a/b/ \"\"", "a/b/+/temp", "+/temp", "a/b/room/temp", "room/temp"},
};

START_TEST(prefix_table)
{
    for (size_t i = 0; i < sizeof prefix_rows / sizeof prefix_rows[0]; i++) {
        bridge_cfg b;
        ck_assert_int_eq(bridge_cfg_init(&b, "edge", err, sizeof err), 0);
        ck_assert_msg(bridge_cfg_line(&b, "topic", prefix_rows[i].topic_line, err, sizeof err) == 0,
                      "row %zu: %s", i, err);
        ck_assert_str_eq(b.topics[0].local_filter, prefix_rows[i].local_filter);
        ck_assert_str_eq(b.topics[0].remote_filter, prefix_rows[i].remote_filter);
        char out[256];
        size_t n = 0;
        uint8_t q = 9;
        const char *l = prefix_rows[i].local, *r = prefix_rows[i].remote;
        ck_assert_int_eq(bridge_topic_out(&b, l, strlen(l), out, sizeof out, &n, &q), 0);
        ck_assert_str_eq(out, r);
        ck_assert_uint_eq(n, strlen(r));
        ck_assert_uint_eq(q, b.topics[0].qos);
        ck_assert_int_eq(bridge_topic_in(&b, r, strlen(r), out, sizeof out, &n, &q), 0);
        ck_assert_str_eq(out, l);
        bridge_cfg_free(&b);
    }
}
END_TEST

static bridge_cfg mapping_cfg(const char *const *topics)
{
    bridge_cfg b;
    ck_assert_int_eq(bridge_cfg_init(&b, "edge", err, sizeof err), 0);
    for (; *topics; topics++)
        ck_assert_msg(bridge_cfg_line(&b, "topic", *topics, err, sizeof err) == 0, "%s", err);
    return b;
}

static int out_of(bridge_cfg *b, const char *t, char *out, size_t cap, uint8_t *q)
{
    size_t n;
    return bridge_topic_out(b, t, strlen(t), out, cap, &n, q);
}

static int in_of(bridge_cfg *b, const char *t, char *out, size_t cap, uint8_t *q)
{
    size_t n;
    return bridge_topic_in(b, t, strlen(t), out, cap, &n, q);
}

START_TEST(directions_and_matching)
{
    const char *topics[] = {"up/# out 1 edge/ site/", "down/# in 2 \"\" cmd/",
                            "up/alarm/# out 2 edge/ site/", "sync/# both 0", NULL};
    bridge_cfg b = mapping_cfg(topics);
    char out[128];
    uint8_t q = 9;
    /* out: the first matching line maps; the QoS is the highest that matches */
    ck_assert_int_eq(out_of(&b, "edge/up/alarm/fire", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "site/up/alarm/fire");
    ck_assert_uint_eq(q, 2);
    ck_assert_int_eq(out_of(&b, "edge/up/t", out, sizeof out, &q), 0);
    ck_assert_uint_eq(q, 1);
    /* a local publish outside every out/both pattern does not go out */
    ck_assert_int_eq(out_of(&b, "up/t", out, sizeof out, &q), BRIDGE_TOPIC_NO_MATCH);
    ck_assert_int_eq(out_of(&b, "down/x", out, sizeof out, &q), BRIDGE_TOPIC_NO_MATCH);
    ck_assert_int_eq(out_of(&b, "sync/a", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "sync/a");
    /* in: only in/both lines, matched against the remote filter */
    ck_assert_int_eq(in_of(&b, "cmd/down/reboot", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "down/reboot");
    ck_assert_uint_eq(q, 2);
    ck_assert_int_eq(in_of(&b, "site/up/t", out, sizeof out, &q), BRIDGE_TOPIC_NO_MATCH);
    ck_assert_int_eq(in_of(&b, "down/reboot", out, sizeof out, &q), BRIDGE_TOPIC_NO_MATCH);
    ck_assert_int_eq(in_of(&b, "sync/b", out, sizeof out, NULL), 0);
    ck_assert_str_eq(out, "sync/b");
    /* the caller's buffer: room for the topic and its NUL */
    ck_assert_int_eq(out_of(&b, "edge/up/t", out, 9, &q), BRIDGE_TOPIC_NOSPACE);
    ck_assert_int_eq(out_of(&b, "edge/up/t", out, 10, &q), 0);
    ck_assert_str_eq(out, "site/up/t");
    bridge_cfg_free(&b);
}
END_TEST

START_TEST(mosquitto_examples_and_edges)
{
    /* mosquitto.conf(5): the remote's $SYS/broker/clients/total arrives
     * locally as test/mosquitto/org/clients/total */
    const char *t1[] = {"clients/total in 0 test/mosquitto/org/ $SYS/broker/", NULL};
    bridge_cfg b = mapping_cfg(t1);
    char out[128];
    uint8_t q;
    ck_assert_str_eq(b.topics[0].remote_filter, "$SYS/broker/clients/total");
    ck_assert_int_eq(in_of(&b, "$SYS/broker/clients/total", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "test/mosquitto/org/clients/total");
    bridge_cfg_free(&b);

    /* '#' never matches $SYS topics [MQTT-4.7.2-1] */
    const char *t2[] = {"# both 0", NULL};
    b = mapping_cfg(t2);
    ck_assert_int_eq(out_of(&b, "$SYS/broker/uptime", out, sizeof out, &q), BRIDGE_TOPIC_NO_MATCH);
    ck_assert_int_eq(in_of(&b, "$SYS/broker/uptime", out, sizeof out, &q), BRIDGE_TOPIC_NO_MATCH);
    bridge_cfg_free(&b);

    /* "L/#" also matches "L"; the prefix "L/" is not there to remove, so
     * Mosquitto keeps the topic whole: "L" goes out as "R/L" */
    const char *t3[] = {"# both 0 L/ R/", NULL};
    b = mapping_cfg(t3);
    ck_assert_int_eq(out_of(&b, "L", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "R/L");
    ck_assert_int_eq(in_of(&b, "R", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "L/R");
    bridge_cfg_free(&b);

    /* "L/" matches "L/#" and would map to the empty topic: refused */
    const char *t4[] = {"# out 0 L/ \"\"", NULL};
    b = mapping_cfg(t4);
    ck_assert_int_eq(out_of(&b, "L/", out, sizeof out, &q), BRIDGE_TOPIC_INVALID);
    ck_assert_int_eq(out_of(&b, "L/x", out, sizeof out, &q), 0);
    ck_assert_str_eq(out, "x");
    bridge_cfg_free(&b);

    /* the result may not exceed 65535 bytes */
    static char big[65536], res[70000];
    memset(big, 'a', 65530);
    memcpy(big, "L/", 2);
    big[65530] = 0;
    const char *t5[] = {"# out 0 L/ remote-long-prefix/", NULL};
    b = mapping_cfg(t5);
    size_t n;
    ck_assert_int_eq(bridge_topic_out(&b, big, strlen(big), res, sizeof res, &n, &q),
                     BRIDGE_TOPIC_INVALID);
    bridge_cfg_free(&b);
}
END_TEST

/* ---- backoff ------------------------------------------------------------ */

static uint32_t rnd_xorshift(void *ctx)
{
    uint32_t *s = ctx;
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

static uint32_t rnd_zero(void *ctx)
{
    return 0;
}

static uint32_t rnd_max(void *ctx)
{
    return UINT32_MAX;
}

START_TEST(backoff_bounds)
{
    static const uint64_t bc[][2] = {{5000, 30000}, {1000, 1000}, {10000, 60000}, {1, 86400000}};
    uint32_t seed = 0x9e3779b9u;
    for (size_t k = 0; k < sizeof bc / sizeof bc[0]; k++) {
        uint64_t base = bc[k][0], cap = bc[k][1], prev = 0, lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < 20000; i++) {
            uint64_t d = bridge_backoff_next(base, cap, prev, rnd_xorshift, &seed);
            uint64_t p = prev < base ? base : prev;
            ck_assert_msg(d >= base && d <= cap, "%llu outside [%llu, %llu]", (unsigned long long)d,
                          (unsigned long long)base, (unsigned long long)cap);
            ck_assert(d <= p * 3);
            lo = d < lo ? d : lo;
            hi = d > hi ? d : hi;
            prev = (i % 50 == 49) ? 0 : d; /* a successful connect resets */
        }
        /* the jitter spreads over the range, it is not stuck at one end */
        if (cap > base && cap / base < 100)
            ck_assert(lo < base + (cap - base) / 4 && hi > cap - (cap - base) / 4);
    }
}
END_TEST

START_TEST(backoff_extremes)
{
    /* the lowest draw always gives the base */
    ck_assert_uint_eq(bridge_backoff_next(5000, 30000, 0, rnd_zero, NULL), 5000);
    ck_assert_uint_eq(bridge_backoff_next(5000, 30000, 29000, rnd_zero, NULL), 5000);
    /* the highest draw triples the previous delay until the cap */
    ck_assert_uint_eq(bridge_backoff_next(5000, 30000, 0, rnd_max, NULL), 15000);
    ck_assert_uint_eq(bridge_backoff_next(5000, 30000, 15000, rnd_max, NULL), 30000);
    ck_assert_uint_eq(bridge_backoff_next(5000, 30000, 30000, rnd_max, NULL), 30000);
    /* no overflow near the top of the range */
    ck_assert_uint_eq(bridge_backoff_next(5, UINT64_MAX, UINT64_MAX / 2, rnd_max, NULL),
                      UINT64_MAX);
    /* a cap below the base is the base */
    ck_assert_uint_eq(bridge_backoff_next(5000, 10, 0, rnd_max, NULL), 5000);

    bridge_cfg b;
    const char *c[] = {"address h", "topic a", "restart_timeout 20", NULL};
    cfg_lines(&b, c);
    ck_assert_uint_eq(bridge_restart_delay_ms(&b, 0, rnd_max, NULL), 20000);
    ck_assert_uint_eq(bridge_restart_delay_ms(&b, 20000, rnd_max, NULL), 20000);
    bridge_cfg_free(&b);
    const char *j[] = {"address h", "topic a", NULL}; /* default: jitter 5..30 s */
    cfg_lines(&b, j);
    ck_assert_uint_eq(bridge_restart_delay_ms(&b, 0, rnd_zero, NULL), 5000);
    ck_assert_uint_eq(bridge_restart_delay_ms(&b, 0, rnd_max, NULL), 15000);
    ck_assert_uint_eq(bridge_restart_delay_ms(&b, 15000, rnd_max, NULL), 30000);
    bridge_cfg_free(&b);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("bridge_cfg");
    TCase *tc = tcase_create("config");
    tcase_add_test(tc, defaults_follow_mosquitto);
    tcase_add_test(tc, queue_limit_keys);
    tcase_add_test(tc, protocol_versions);
    tcase_add_test(tc, same_and_changed);
    tcase_add_test(tc, every_key_sets_its_field);
    tcase_add_test(tc, local_cleansession_follows_cleansession);
    tcase_add_test(tc, good_line_table);
    tcase_add_test(tc, bad_line_table);
    tcase_add_test(tc, keys_and_duplicates);
    tcase_add_test(tc, bad_block_table);
    tcase_add_test(tc, set_checks);
    suite_add_tcase(s, tc);
    tc = tcase_create("topics");
    tcase_add_test(tc, prefix_table);
    tcase_add_test(tc, directions_and_matching);
    tcase_add_test(tc, mosquitto_examples_and_edges);
    suite_add_tcase(s, tc);
    tc = tcase_create("backoff");
    tcase_add_test(tc, backoff_bounds);
    tcase_add_test(tc, backoff_extremes);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    SRunner *r = srunner_create(suite());
    srunner_run_all(r, CK_NORMAL);
    int failed = srunner_ntests_failed(r);
    srunner_free(r);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

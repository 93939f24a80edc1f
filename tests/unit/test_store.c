/* Unit tests for store/ (durable state on SQLite): round trips of every kind
 * of row across a reopen, message bodies stored once and collected with
 * their last reference, group commit through the journal, a failed commit
 * (file size limit) that keeps the journal and succeeds later, and the
 * quarantine of zero-filled, truncated, foreign and garbage files. */
#include <check.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store/store.h"

static char dir[256], path[300];
static int released;

static void on_release(void *owner)
{
    released++;
    (void)owner;
}

static void setup(void)
{
    snprintf(dir, sizeof dir, "/tmp/secbroker-store-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/secbroker.db", dir);
    released = 0;
}

static void teardown(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

static store *open_ok(store_open_info *info)
{
    store *st = NULL;
    char err[256] = "";
    store_opts o = {.strict = true, .quarantine = true};
    int rc = store_open(&st, path, &o, info, err, sizeof err);
    ck_assert_msg(rc == STORE_OK, "store_open: %d %s", rc, err);
    store_set_release(st, on_release);
    return st;
}

static store_counts counts(store *st)
{
    store_counts c;
    memset(&c, 0xff, sizeof c);
    ck_assert_int_eq(store_count(st, &c), STORE_OK);
    return c;
}

/* store_msg_add with the fields as arguments (no properties, no expiry). */
static int msg_add(store *st, uint64_t *id, const char *topic, size_t tlen, const uint8_t *payload,
                   size_t plen, uint8_t qos, bool retain, void *owner)
{
    store_msg m = {.topic = topic,
                   .topic_len = tlen,
                   .payload = payload,
                   .payload_len = plen,
                   .qos = qos,
                   .retain = retain};
    return store_msg_add(st, id, &m, owner);
}

static uint64_t add_msg(store *st, const char *topic, const char *payload, uint8_t qos)
{
    uint64_t id = 0;
    ck_assert_int_eq(msg_add(st, &id, topic, strlen(topic), (const uint8_t *)payload,
                             strlen(payload), qos, false, NULL),
                     STORE_OK);
    ck_assert_uint_gt(id, 0);
    return id;
}

/* MQTT 5: a message's property block and its expiry come back as stored;
 * a message without them reads back with none. */
static int on_retained_v5(void *ud, const store_msg *m, const store_source *src)
{
    store_msg *out = ud;
    static uint8_t props[16];
    ck_assert_uint_le(m->props_len, sizeof props);
    if (m->props_len) memcpy(props, m->props, m->props_len);
    *out = *m;
    out->props = m->props_len ? props : NULL;
    return 0;
}

START_TEST(message_properties_and_expiry)
{
    store *st = open_ok(NULL);
    static const uint8_t props[] = {0x03, 0x00, 0x02, 't', 'x', 0x01, 0x01};
    store_msg m = {.topic = "v5/t",
                   .topic_len = 4,
                   .payload = (const uint8_t *)"p",
                   .payload_len = 1,
                   .qos = 1,
                   .retain = true,
                   .props = props,
                   .props_len = sizeof props,
                   .expires = 1796073025};
    uint64_t id = 0;
    ck_assert_int_eq(store_msg_add(st, &id, &m, NULL), STORE_OK);
    ck_assert_int_eq(store_retain_set(st, "v5/t", 4, id, NULL), STORE_OK);
    m.expires = -1;
    ck_assert_int_eq(store_msg_add(st, &id, &m, NULL), STORE_ERR_ARG);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_close(st);

    st = open_ok(NULL);
    store_msg got = {0};
    store_load_cbs cbs = {.retained = on_retained_v5};
    ck_assert_int_eq(store_load(st, &cbs, &got), STORE_OK);
    ck_assert_uint_eq(got.props_len, sizeof props);
    ck_assert_mem_eq(got.props, props, sizeof props);
    ck_assert_int_eq(got.expires, 1796073025);
    ck_assert_int_eq(store_retain_clear(st, "v5/t", 4), STORE_OK);
    uint64_t plain = add_msg(st, "v5/t", "q", 0);
    ck_assert_int_eq(store_retain_set(st, "v5/t", 4, plain, NULL), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    memset(&got, 0xff, sizeof got);
    ck_assert_int_eq(store_load(st, &cbs, &got), STORE_OK);
    ck_assert_uint_eq(got.props_len, 0);
    ck_assert_int_eq(got.expires, 0);
    store_close(st);
}
END_TEST

START_TEST(create_and_empty)
{
    store_open_info info;
    store *st = open_ok(&info);
    ck_assert(info.created);
    ck_assert(!info.quarantined);
    store_counts c = counts(st);
    ck_assert_uint_eq(c.messages + c.retained + c.sessions + c.subscriptions + c.deliveries, 0);
    ck_assert_int_eq(store_commit(st), STORE_OK); /* nothing pending is fine */
    store_close(st);
    store_close(NULL);
}
END_TEST

/* ---- retained -------------------------------------------------------------- */

struct seen {
    int n;
    char topic[8][64];
    char payload[8][64];
    char source[8][64]; /* "id/user/port", "-" without a source */
};

static int on_retained(void *ud, const store_msg *m, const store_source *src)
{
    struct seen *s = ud;
    ck_assert_int_lt(s->n, 8);
    snprintf(s->topic[s->n], 64, "%.*s", (int)m->topic_len, m->topic);
    snprintf(s->payload[s->n], 64, "%.*s", (int)m->payload_len, (const char *)m->payload);
    if (src)
        snprintf(s->source[s->n], 64, "%s/%s/%u", src->client_id,
                 src->username ? src->username : "(anonymous)", src->port);
    else
        snprintf(s->source[s->n], 64, "-");
    s->n++;
    return 0;
}

START_TEST(retained_source_round_trip)
{
    store *st = open_ok(NULL);
    store_source alice = {"pub-1", "alice", 1884}, anon = {"pub-2", NULL, 0};
    ck_assert_int_eq(store_retain_set(st, "a", 1, add_msg(st, "a", "1", 1), &alice), STORE_OK);
    ck_assert_int_eq(store_retain_set(st, "b", 1, add_msg(st, "b", "2", 1), &anon), STORE_OK);
    ck_assert_int_eq(store_retain_set(st, "c", 1, add_msg(st, "c", "3", 1), NULL), STORE_OK);
    /* a replacement replaces the source too */
    ck_assert_int_eq(store_retain_set(st, "a", 1, add_msg(st, "a", "4", 1), &anon), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_close(st);
    st = open_ok(NULL);
    struct seen s = {0};
    store_load_cbs cbs = {.retained = on_retained};
    ck_assert_int_eq(store_load(st, &cbs, &s), STORE_OK);
    ck_assert_int_eq(s.n, 3);
    for (int i = 0; i < 3; i++) {
        const char *want = s.topic[i][0] == 'c' ? "-" : "pub-2/(anonymous)/0";
        ck_assert_str_eq(s.source[i], want);
    }
    ck_assert_int_eq(store_retain_set(st, "a", 1, add_msg(st, "a", "5", 1), &alice), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_close(st);
    st = open_ok(NULL);
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(store_load(st, &cbs, &s), STORE_OK);
    for (int i = 0; i < s.n; i++)
        if (s.topic[i][0] == 'a') ck_assert_str_eq(s.source[i], "pub-1/alice/1884");
    store_close(st);
}
END_TEST

/* A database as schema 1 wrote it (before retained sources). */
static void make_schema1_file(void)
{
    sqlite3 *db = NULL;
    ck_assert_int_eq(sqlite3_open(path, &db), SQLITE_OK);
    const char *sql =
        "PRAGMA application_id=1397048130; PRAGMA user_version=1;"
        "CREATE TABLE messages(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
        " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
        " refs INTEGER NOT NULL, props BLOB, expires INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE retained(topic TEXT PRIMARY KEY, msg_id INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE sessions(client_id TEXT PRIMARY KEY, username TEXT,"
        " expiry INTEGER NOT NULL) WITHOUT ROWID;"
        "CREATE TABLE subscriptions(client_id TEXT NOT NULL, filter TEXT NOT NULL,"
        " qos INTEGER NOT NULL, sub_id INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(client_id,filter))"
        " WITHOUT ROWID;"
        "CREATE TABLE deliveries(client_id TEXT NOT NULL, seq INTEGER NOT NULL,"
        " msg_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
        " state INTEGER NOT NULL, pid INTEGER NOT NULL, PRIMARY KEY(client_id,seq)) WITHOUT ROWID;"
        "CREATE TABLE qos2_in(client_id TEXT NOT NULL, pid INTEGER NOT NULL,"
        " PRIMARY KEY(client_id,pid)) WITHOUT ROWID;"
        "INSERT INTO messages VALUES(1,'old/t',X'6f6c64',1,1,1,NULL,0);"
        "INSERT INTO retained VALUES('old/t',1);"
        "INSERT INTO sessions VALUES('old-session',NULL,60);";
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    ck_assert_msg(rc == SQLITE_OK, "%s", msg ? msg : "");
    sqlite3_close(db);
}

static int on_old_session(void *ud, const store_session *ss)
{
    ck_assert_str_eq(ss->client_id, "old-session");
    ck_assert_uint_eq(ss->expiry_interval, 60);
    *(int *)ud = ss->listener_port; /* 0: the old row had none */
    return 0;
}

START_TEST(schema1_file_is_migrated)
{
    make_schema1_file();
    store_open_info info = {0};
    store *st = open_ok(&info);
    ck_assert(!info.quarantined);
    struct seen s = {0};
    store_load_cbs cbs = {.retained = on_retained};
    ck_assert_int_eq(store_load(st, &cbs, &s), STORE_OK);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.topic[0], "old/t");
    ck_assert_str_eq(s.payload[0], "old");
    ck_assert_str_eq(s.source[0], "-"); /* old rows have no source */
    int port = -1;
    store_load_cbs scbs = {.session = on_old_session};
    ck_assert_int_eq(store_load(st, &scbs, &port), STORE_OK);
    ck_assert_int_eq(port, 0);
    store_source src = {"new", "u", 1883};
    ck_assert_int_eq(store_retain_set(st, "new/t", 5, add_msg(st, "new/t", "n", 1), &src),
                     STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_close(st);
    st = open_ok(NULL); /* now schema 2: opened without another migration */
    memset(&s, 0, sizeof s);
    ck_assert_int_eq(store_load(st, &cbs, &s), STORE_OK);
    ck_assert_int_eq(s.n, 2);
    for (int i = 0; i < 2; i++)
        ck_assert_str_eq(s.source[i], s.topic[i][0] == 'n' ? "new/u/1883" : "-");
    store_close(st);
}
END_TEST

START_TEST(retained_round_trip_and_replace)
{
    store *st = open_ok(NULL);
    uint64_t a = add_msg(st, "lab/temp", "21.5", 1);
    ck_assert_int_eq(store_retain_set(st, "lab/temp", 8, a, NULL), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    ck_assert_int_eq(released, 1);
    /* replace: the old body must be collected, the new one kept */
    uint64_t b = add_msg(st, "lab/temp", "22.0", 0);
    ck_assert_uint_gt(b, a);
    ck_assert_int_eq(store_retain_set(st, "lab/temp", 8, b, NULL), STORE_OK);
    ck_assert_int_eq(store_msg_gc(st, a), STORE_OK); /* the broker dropped the old one */
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_counts c = counts(st);
    ck_assert_uint_eq(c.retained, 1);
    ck_assert_uint_eq(c.messages, 1);
    store_close(st);

    st = open_ok(NULL);
    struct seen s = {0};
    store_load_cbs cbs = {.retained = on_retained};
    ck_assert_int_eq(store_load(st, &cbs, &s), STORE_OK);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.topic[0], "lab/temp");
    ck_assert_str_eq(s.payload[0], "22.0");
    /* clearing removes the slot and its body; ids keep growing after reopen */
    ck_assert_int_eq(store_retain_clear(st, "lab/temp", 8), STORE_OK);
    uint64_t u = add_msg(st, "x", "unreferenced", 1);
    ck_assert_uint_gt(u, b);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_counts c2 = counts(st);
    ck_assert_uint_eq(c2.retained, 0);
    ck_assert_uint_eq(c2.messages, 2); /* kept while the broker holds them */
    ck_assert_int_eq(store_msg_gc(st, b), STORE_OK);
    ck_assert_int_eq(store_msg_gc(st, u), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    ck_assert_uint_eq(counts(st).messages, 0);
    store_close(st);
}
END_TEST

/* ---- sessions ---------------------------------------------------------------- */

struct load_all {
    int sessions, subs, q2;
    char user[64];
    uint32_t expiry;
    uint16_t port;
    char filter[4][64];
    uint8_t fqos[4];
    uint16_t pid[4];
};

static int on_session(void *ud, const store_session *s)
{
    struct load_all *l = ud;
    l->sessions++;
    ck_assert_str_eq(s->client_id, "dev1");
    snprintf(l->user, sizeof l->user, "%s", s->username ? s->username : "(null)");
    l->expiry = s->expiry_interval;
    l->port = s->listener_port;
    return 0;
}

static int on_sub(void *ud, const char *cid, const char *filter, uint8_t qos, uint32_t sub_id)
{
    ck_assert_uint_eq(sub_id, strcmp(filter, "lab/+/x") == 0 ? 77 : 0);
    struct load_all *l = ud;
    ck_assert_int_lt(l->subs, 4);
    ck_assert_str_eq(cid, "dev1");
    snprintf(l->filter[l->subs], 64, "%s", filter);
    l->fqos[l->subs++] = qos;
    return 0;
}

static int on_q2(void *ud, const char *cid, uint16_t pid)
{
    struct load_all *l = ud;
    ck_assert_int_lt(l->q2, 4);
    l->pid[l->q2++] = pid;
    return 0;
}

struct dlist {
    int n;
    uint64_t seq[16];
    uint8_t state[16];
    uint16_t pid[16];
    char payload[16][32];
};

static int on_delivery(void *ud, const store_delivery *d)
{
    struct dlist *l = ud;
    ck_assert_int_lt(l->n, 16);
    l->seq[l->n] = d->seq;
    l->state[l->n] = (uint8_t)d->state;
    l->pid[l->n] = d->pid;
    snprintf(l->payload[l->n], 32, "%.*s", (int)d->msg.payload_len, (const char *)d->msg.payload);
    l->n++;
    return 0;
}

static void make_session(store *st)
{
    ck_assert_int_eq(store_session_put(st, "dev1", "alice", 0xFFFFFFFFu, 8883), STORE_OK);
    ck_assert_int_eq(store_sub_put(st, "dev1", "lab/#", 5, 1, 0), STORE_OK);
    ck_assert_int_eq(store_sub_put(st, "dev1", "lab/+/x", 7, 2, 77), STORE_OK);
    ck_assert_int_eq(store_sub_put(st, "dev1", "lab/#", 5, 2, 0), STORE_OK); /* upgrade */
    ck_assert_int_eq(store_qos2_in_add(st, "dev1", 7), STORE_OK);
    ck_assert_int_eq(store_qos2_in_add(st, "dev1", 7), STORE_OK); /* twice is once */
    ck_assert_int_eq(store_qos2_in_add(st, "dev1", 65535), STORE_OK);
    uint64_t m = add_msg(st, "lab/a", "one", 2);
    ck_assert_int_eq(store_delivery_add(st, "dev1", 1, m, 2, false, STORE_PUBLISH_SENT, 1),
                     STORE_OK);
    uint64_t m2 = add_msg(st, "lab/b", "two", 1);
    ck_assert_int_eq(store_delivery_add(st, "dev1", 2, m2, 1, false, STORE_QUEUED, 0), STORE_OK);
    ck_assert_int_eq(store_delivery_add(st, "dev1", 3, m, 1, false, STORE_QUEUED, 0), STORE_OK);
    ck_assert_int_eq(store_delivery_update(st, "dev1", 1, STORE_PUBREL_SENT, 1), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
}

START_TEST(session_round_trip)
{
    store *st = open_ok(NULL);
    make_session(st);
    store_close(st);

    st = open_ok(NULL);
    struct load_all l = {0};
    store_load_cbs cbs = {.session = on_session, .sub = on_sub, .qos2_in = on_q2};
    ck_assert_int_eq(store_load(st, &cbs, &l), STORE_OK);
    ck_assert_int_eq(l.sessions, 1);
    ck_assert_str_eq(l.user, "alice");
    ck_assert_uint_eq(l.expiry, 0xFFFFFFFFu);
    ck_assert_uint_eq(l.port, 8883);
    ck_assert_int_eq(l.subs, 2);
    for (int i = 0; i < 2; i++)
        ck_assert_uint_eq(l.fqos[i], strcmp(l.filter[i], "lab/#") == 0 ? 2 : 2);
    ck_assert_int_eq(l.q2, 2);
    ck_assert_uint_eq(l.pid[0] + l.pid[1], 7 + 65535);

    struct dlist d = {0};
    ck_assert_int_eq(store_deliveries(st, "dev1", 0, 0, on_delivery, &d), 3);
    ck_assert_uint_eq(d.seq[0], 1);
    ck_assert_uint_eq(d.state[0], STORE_PUBREL_SENT);
    ck_assert_str_eq(d.payload[0], "one");
    ck_assert_str_eq(d.payload[1], "two");
    ck_assert_str_eq(d.payload[2], "one"); /* the same body, stored once */
    ck_assert_uint_eq(counts(st).messages, 2);
    ck_assert_uint_eq(counts(st).max_seq, 3);
    /* a window of the queue: after seq 1, at most 1 */
    struct dlist w = {0};
    ck_assert_int_eq(store_deliveries(st, "dev1", 1, 1, on_delivery, &w), 1);
    ck_assert_uint_eq(w.seq[0], 2);
    store_close(st);
}
END_TEST

START_TEST(bodies_collected_with_last_reference)
{
    store *st = open_ok(NULL);
    make_session(st);
    ck_assert_int_eq(store_delivery_del(st, "dev1", 1), STORE_OK);
    for (uint64_t id = 1; id <= 2; id++) /* the broker lets go of both bodies */
        ck_assert_int_eq(store_msg_gc(st, id), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    ck_assert_uint_eq(counts(st).messages, 2); /* seq 3 still holds "one", seq 2 "two" */
    ck_assert_int_eq(store_delivery_del(st, "dev1", 3), STORE_OK);
    ck_assert_int_eq(store_msg_gc(st, 1), STORE_OK);
    ck_assert_int_eq(store_qos2_in_del(st, "dev1", 7), STORE_OK);
    ck_assert_int_eq(store_sub_del(st, "dev1", "lab/+/x", 7), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    store_counts c = counts(st);
    ck_assert_uint_eq(c.messages, 1);
    ck_assert_uint_eq(c.deliveries, 1);
    ck_assert_uint_eq(c.qos2_in, 1);
    ck_assert_uint_eq(c.subscriptions, 1);
    /* the session goes, and everything hanging off it */
    ck_assert_int_eq(store_session_del(st, "dev1"), STORE_OK);
    ck_assert_int_eq(store_msg_gc(st, 2), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    c = counts(st);
    ck_assert_uint_eq(c.sessions + c.subscriptions + c.deliveries + c.qos2_in + c.messages, 0);
    store_close(st);
}
END_TEST

START_TEST(group_commit_and_release)
{
    store *st = open_ok(NULL);
    ck_assert_int_eq(store_session_put(st, "bulk", NULL, 0, 0), STORE_OK);
    char topic[32];
    for (int i = 0; i < 5000; i++) {
        uint64_t id = 0;
        snprintf(topic, sizeof topic, "bulk/%d", i);
        ck_assert_int_eq(
            msg_add(st, &id, "bulk/t", 6, (const uint8_t *)"payload", 7, 1, false, (void *)topic),
            STORE_OK);
        ck_assert_int_eq(
            store_delivery_add(st, "bulk", (uint64_t)i + 1, id, 1, false, STORE_QUEUED, 0),
            STORE_OK);
    }
    ck_assert_uint_eq(store_pending(st), 10001);
    ck_assert_int_eq(released, 0); /* bodies are borrowed until the commit */
    ck_assert_int_eq(store_commit(st), STORE_OK);
    ck_assert_int_eq(released, 5000);
    ck_assert_uint_eq(store_pending(st), 0);
    ck_assert_uint_eq(counts(st).deliveries, 5000);
    /* close commits what is pending and releases it */
    uint64_t id;
    ck_assert_int_eq(msg_add(st, &id, "late", 4, (const uint8_t *)"x", 1, 1, false, NULL),
                     STORE_OK);
    ck_assert_int_eq(store_delivery_add(st, "bulk", 5001, id, 1, false, STORE_QUEUED, 0), STORE_OK);
    store_close(st);
    ck_assert_int_eq(released, 5001);
    st = open_ok(NULL);
    ck_assert_uint_eq(counts(st).deliveries, 5001);
    store_close(st);
}
END_TEST

/* A write that fails (here: the file size limit, as on a full disk) keeps
 * the journal: nothing is durable and nothing is lost; once writing works
 * again the same commit succeeds. */
START_TEST(failed_commit_keeps_journal)
{
    store *st = open_ok(NULL);
    ck_assert_int_eq(store_session_put(st, "dev", NULL, 0, 0), STORE_OK);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old, small;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &old), 0);
    small = old;
    small.rlim_cur = 256 * 1024;
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &small), 0);
    static uint8_t big[64 * 1024];
    memset(big, 'x', sizeof big);
    for (int i = 0; i < 16; i++) {
        uint64_t id;
        ck_assert_int_eq(msg_add(st, &id, "big", 3, big, sizeof big, 1, false, NULL), STORE_OK);
        ck_assert_int_eq(
            store_delivery_add(st, "dev", (uint64_t)i + 1, id, 1, false, STORE_QUEUED, 0),
            STORE_OK);
    }
    ck_assert_int_eq(store_commit(st), STORE_ERR_IO);
    ck_assert_msg(strlen(store_errmsg(st)) > 0, "a failed commit says why");
    ck_assert_uint_eq(store_pending(st), 32);
    ck_assert_int_eq(released, 0);
    ck_assert_int_eq(store_commit(st), STORE_ERR_IO); /* still failing: still kept */
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &old), 0);
    ck_assert_int_eq(store_commit(st), STORE_OK);
    ck_assert_int_eq(released, 16);
    store_close(st);
    st = open_ok(NULL);
    ck_assert_uint_eq(counts(st).deliveries, 16);
    store_close(st);
}
END_TEST

/* ---- damaged files -------------------------------------------------------------- */

enum damage { ZERO_FILLED, TRUNCATED, GARBAGE, FOREIGN_DB };

static void damage_file(enum damage how)
{
    if (how == FOREIGN_DB) {
        char cmd[400];
        snprintf(cmd, sizeof cmd, "sqlite3 '%s' 'CREATE TABLE t(x); INSERT INTO t VALUES(1);'",
                 path);
        ck_assert_int_eq(system(cmd), 0);
        return;
    }
    if (how == TRUNCATED) {
        store *st = open_ok(NULL);
        make_session(st);
        store_close(st);
        struct stat sb;
        ck_assert_int_eq(stat(path, &sb), 0);
        ck_assert_int_eq(truncate(path, sb.st_size / 2 + 100), 0);
        return;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ck_assert_int_ge(fd, 0);
    char buf[4096];
    memset(buf, 0, sizeof buf);
    if (how == GARBAGE) snprintf(buf, sizeof buf, "this is not a database\n");
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(write(fd, buf, sizeof buf), (int)sizeof buf);
    close(fd);
}

START_TEST(damaged_file_quarantined)
{
    damage_file((enum damage)_i);
    store_open_info info;
    store *st = open_ok(&info);
    ck_assert_msg(info.quarantined, "damage %d not detected", _i);
    ck_assert(strlen(info.reason) > 0);
    ck_assert_msg(strstr(info.moved_to, ".corrupt-") != NULL, "moved to %s", info.moved_to);
    struct stat sb;
    ck_assert_int_eq(stat(info.moved_to, &sb), 0); /* kept for inspection */
    store_counts c = counts(st);
    ck_assert_uint_eq(c.sessions + c.messages, 0); /* starts empty */
    make_session(st);                              /* and works */
    store_close(st);
}
END_TEST

START_TEST(damaged_file_refused_without_quarantine)
{
    damage_file(ZERO_FILLED);
    store *st = NULL;
    char err[256] = "";
    store_opts o = {.strict = true, .quarantine = false};
    ck_assert_int_eq(store_open(&st, path, &o, NULL, err, sizeof err), STORE_ERR_CORRUPT);
    ck_assert_msg(strlen(err) > 0, "no reason given");
}
END_TEST

START_TEST(unwritable_location)
{
    store *st = NULL;
    char err[256] = "";
    store_opts o = {.strict = true, .quarantine = true};
    int rc = store_open(&st, "/nonexistent-dir/x.db", &o, NULL, err, sizeof err);
    ck_assert_int_lt(rc, 0);
    ck_assert_msg(strlen(err) > 0, "no reason given");
}
END_TEST

START_TEST(long_strings_refused)
{
    store *st = open_ok(NULL);
    static char big[70000];
    memset(big, 'a', sizeof big - 1);
    uint64_t id;
    ck_assert_int_eq(msg_add(st, &id, big, 65536, NULL, 0, 1, false, NULL), STORE_ERR_ARG);
    ck_assert_int_eq(store_sub_put(st, "c", big, 65536, 1, 0), STORE_ERR_ALLOC);
    ck_assert_uint_eq(store_pending(st), 0);
    store_close(st);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, create_and_empty);
    tcase_add_test(tc, retained_round_trip_and_replace);
    tcase_add_test(tc, retained_source_round_trip);
    tcase_add_test(tc, schema1_file_is_migrated);
    tcase_add_test(tc, message_properties_and_expiry);
    tcase_add_test(tc, session_round_trip);
    tcase_add_test(tc, bodies_collected_with_last_reference);
    tcase_add_test(tc, group_commit_and_release);
    tcase_add_test(tc, failed_commit_keeps_journal);
    tcase_add_loop_test(tc, damaged_file_quarantined, ZERO_FILLED, FOREIGN_DB + 1);
    tcase_add_test(tc, damaged_file_refused_without_quarantine);
    tcase_add_test(tc, unwritable_location);
    tcase_add_test(tc, long_strings_refused);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

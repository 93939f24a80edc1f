/*
 * store.c -- durable state on SQLite: schema, journal, group commit,
 * quarantine of damaged files (contract in store.h).
 */
#include "store/store.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>

#define STORE_APP_ID 0x53454342 /* "SECB" */
/* 2: retained.source_* (check_retain_source) and sessions.listener_port
 * (per_listener_settings); a version 1 file is migrated at open (its rows
 * have no source and no port). */
#define STORE_SCHEMA_VERSION 2

enum op_kind {
    OP_MSG_ADD,
    OP_RETAIN_SET,
    OP_RETAIN_CLEAR,
    OP_SESSION_PUT,
    OP_SESSION_DEL,
    OP_SUB_PUT,
    OP_SUB_DEL,
    OP_DELIV_ADD,
    OP_DELIV_UPDATE,
    OP_DELIV_DEL,
    OP_Q2_ADD,
    OP_Q2_DEL,
    OP_MSG_GC,
};

/* One journaled change. Strings the caller does not keep alive are copied
 * into the journal's arena (offsets, as the arena may move); a message body
 * is borrowed until the release hook. */
struct op {
    uint8_t kind, qos, state;
    bool retain;
    uint16_t pid;
    uint32_t expiry;
    uint64_t id, seq;
    size_t s1, s1len; /* client id, or topic for retained ops */
    size_t s2, s2len; /* filter, username, or a retained message's source client id
                         (s2len == SIZE_MAX: NULL) */
    size_t s3, s3len; /* a retained message's source username (SIZE_MAX: NULL) */
    const char *topic;
    size_t tlen;
    const uint8_t *payload;
    size_t plen;
    const uint8_t *props; /* MQTT 5 property block of a message */
    size_t prlen;
    int64_t expires; /* wall-clock seconds, 0 = never */
    void *owner;
};

enum stmt_id {
    ST_MSG_ADD,
    ST_RETAIN_SET,
    ST_RETAIN_CLEAR,
    ST_SESSION_PUT,
    ST_SESSION_DEL_D,
    ST_SESSION_DEL_S,
    ST_SESSION_DEL_Q,
    ST_SESSION_DEL,
    ST_SUB_PUT,
    ST_SUB_DEL,
    ST_DELIV_ADD,
    ST_DELIV_UPDATE,
    ST_DELIV_DEL,
    ST_Q2_ADD,
    ST_Q2_DEL,
    ST_GC,
    ST_BEGIN,
    ST_COMMIT,
    ST__N,
};

static const char *const stmt_sql[ST__N] = {
    [ST_MSG_ADD] = "INSERT INTO messages(id,topic,payload,qos,retain,refs,props,expires)"
                   " VALUES(?,?,?,?,?,0,?,?)",
    [ST_RETAIN_SET] = "INSERT INTO retained(topic,msg_id,source_id,source_user,source_port)"
                      " VALUES(?,?,?,?,?) ON CONFLICT(topic) DO UPDATE SET"
                      " msg_id=excluded.msg_id,source_id=excluded.source_id,"
                      "source_user=excluded.source_user,source_port=excluded.source_port",
    [ST_RETAIN_CLEAR] = "DELETE FROM retained WHERE topic=?",
    [ST_SESSION_PUT] = "INSERT INTO sessions(client_id,username,expiry,listener_port)"
                       " VALUES(?,?,?,?) ON CONFLICT(client_id) DO UPDATE SET"
                       " username=excluded.username,expiry=excluded.expiry,"
                       "listener_port=excluded.listener_port",
    [ST_SESSION_DEL_D] = "DELETE FROM deliveries WHERE client_id=?",
    [ST_SESSION_DEL_S] = "DELETE FROM subscriptions WHERE client_id=?",
    [ST_SESSION_DEL_Q] = "DELETE FROM qos2_in WHERE client_id=?",
    [ST_SESSION_DEL] = "DELETE FROM sessions WHERE client_id=?",
    [ST_SUB_PUT] = "INSERT INTO subscriptions(client_id,filter,qos,sub_id) VALUES(?,?,?,?) "
                   "ON CONFLICT(client_id,filter) DO UPDATE SET qos=excluded.qos,"
                   "sub_id=excluded.sub_id",
    [ST_SUB_DEL] = "DELETE FROM subscriptions WHERE client_id=? AND filter=?",
    [ST_DELIV_ADD] = "INSERT INTO deliveries(client_id,seq,msg_id,qos,retain,state,pid) "
                     "VALUES(?,?,?,?,?,?,?)",
    [ST_DELIV_UPDATE] = "UPDATE deliveries SET state=?,pid=? WHERE client_id=? AND seq=?",
    [ST_DELIV_DEL] = "DELETE FROM deliveries WHERE client_id=? AND seq=?",
    [ST_Q2_ADD] = "INSERT OR IGNORE INTO qos2_in(client_id,pid) VALUES(?,?)",
    [ST_Q2_DEL] = "DELETE FROM qos2_in WHERE client_id=? AND pid=?",
    [ST_GC] = "DELETE FROM messages WHERE id=? AND refs<=0",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
};

/* Message rows are reference-counted by triggers (deliveries and retained
 * slots pointing at them); a row goes when its count is 0 and the broker has
 * let go of the message (store_msg_gc), and at open (leftovers). */
static const char schema_sql[] =
    "CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, topic TEXT NOT NULL,"
    " payload BLOB NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " refs INTEGER NOT NULL, props BLOB, expires INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS messages_unref ON messages(refs) WHERE refs<=0;"
    "CREATE TABLE IF NOT EXISTS retained(topic TEXT PRIMARY KEY, msg_id INTEGER NOT NULL,"
    " source_id TEXT, source_user TEXT, source_port INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS sessions(client_id TEXT PRIMARY KEY, username TEXT,"
    " expiry INTEGER NOT NULL, listener_port INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS subscriptions(client_id TEXT NOT NULL, filter TEXT NOT NULL,"
    " qos INTEGER NOT NULL, sub_id INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(client_id,filter))"
    " WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS deliveries(client_id TEXT NOT NULL, seq INTEGER NOT NULL,"
    " msg_id INTEGER NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL,"
    " state INTEGER NOT NULL, pid INTEGER NOT NULL, PRIMARY KEY(client_id,seq)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS qos2_in(client_id TEXT NOT NULL, pid INTEGER NOT NULL,"
    " PRIMARY KEY(client_id,pid)) WITHOUT ROWID;"
    "CREATE TRIGGER IF NOT EXISTS deliveries_ins AFTER INSERT ON deliveries BEGIN"
    " UPDATE messages SET refs=refs+1 WHERE id=NEW.msg_id; END;"
    "CREATE TRIGGER IF NOT EXISTS deliveries_del AFTER DELETE ON deliveries BEGIN"
    " UPDATE messages SET refs=refs-1 WHERE id=OLD.msg_id; END;"
    "CREATE TRIGGER IF NOT EXISTS retained_ins AFTER INSERT ON retained BEGIN"
    " UPDATE messages SET refs=refs+1 WHERE id=NEW.msg_id; END;"
    "CREATE TRIGGER IF NOT EXISTS retained_del AFTER DELETE ON retained BEGIN"
    " UPDATE messages SET refs=refs-1 WHERE id=OLD.msg_id; END;"
    "CREATE TRIGGER IF NOT EXISTS retained_upd AFTER UPDATE OF msg_id ON retained BEGIN"
    " UPDATE messages SET refs=refs-1 WHERE id=OLD.msg_id;"
    " UPDATE messages SET refs=refs+1 WHERE id=NEW.msg_id; END;";

struct store {
    sqlite3 *db;
    sqlite3_stmt *st[ST__N];
    struct op *ops;
    size_t nops, cap_ops;
    char *arena;
    size_t alen, acap;
    uint64_t next_msg_id;
    store_release_fn release;
    int wal_fd; /* external_sync: the write-ahead log, for store_sync */
    char err[320];
};

static void set_err(store *st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(store *st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(st->err, sizeof st->err, fmt, ap);
    va_end(ap);
}

const char *store_errmsg(const store *st)
{
    return st ? st->err : "no store";
}

void store_set_release(store *st, store_release_fn fn)
{
    st->release = fn;
}

size_t store_pending(const store *st)
{
    return st->nops;
}

/* ---- opening ------------------------------------------------------------ */

static int exec_sql(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
    snprintf(err, errlen, "%s", msg ? msg : sqlite3_errmsg(db));
    sqlite3_free(msg);
    return -1;
}

static int pragma_int(sqlite3 *db, const char *sql, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) *out = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    return rc == SQLITE_ROW ? 0 : -1;
}

/* Schema 1 -> 2: who published each retained message. Old rows get NULL
 * (no source recorded: check_retain_source lets them through, as Mosquitto
 * does with a message that has no source). */
static const char migrate_1_sql[] = "ALTER TABLE retained ADD COLUMN source_id TEXT;"
                                    "ALTER TABLE retained ADD COLUMN source_user TEXT;"
                                    "ALTER TABLE retained ADD COLUMN source_port INTEGER NOT NULL"
                                    " DEFAULT 0;"
                                    "ALTER TABLE sessions ADD COLUMN listener_port INTEGER NOT NULL"
                                    " DEFAULT 0;";

/* Is this file ours and whole? 0, or -1 with the reason in err. *from is
 * the schema version to migrate from (0: none needed). */
static int check_file(sqlite3 *db, int *from, char *err, size_t errlen)
{
    int app = 0, ver = 0;
    if (pragma_int(db, "PRAGMA application_id", &app) < 0 ||
        pragma_int(db, "PRAGMA user_version", &ver) < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    int tables = 0;
    if (pragma_int(db, "SELECT count(*) FROM sqlite_schema", &tables) < 0) {
        snprintf(err, errlen, "%s", sqlite3_errmsg(db));
        return -1;
    }
    if (tables > 0 && app != STORE_APP_ID) {
        snprintf(err, errlen, "not a secbroker database (application_id %d)", app);
        return -1;
    }
    *from = tables > 0 && ver == 1 ? 1 : 0;
    if (tables > 0 && ver != STORE_SCHEMA_VERSION && !*from) {
        snprintf(err, errlen, "schema version %d, this broker reads %d", ver, STORE_SCHEMA_VERSION);
        return -1;
    }
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA quick_check", -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    const unsigned char *res = rc == SQLITE_ROW ? sqlite3_column_text(s, 0) : NULL;
    int ok = res && strcmp((const char *)res, "ok") == 0;
    if (!ok)
        snprintf(err, errlen, "integrity check: %s", res ? (const char *)res : sqlite3_errmsg(db));
    sqlite3_finalize(s);
    return ok ? 0 : -1;
}

static int setup_schema(sqlite3 *db, bool strict, int from, char *err, size_t errlen)
{
    char sql[256];
    if (exec_sql(db, "PRAGMA journal_mode=WAL", err, errlen) < 0) return -1;
    snprintf(sql, sizeof sql, "PRAGMA synchronous=%s", strict ? "FULL" : "NORMAL");
    if (exec_sql(db, sql, err, errlen) < 0) return -1;
    if (exec_sql(db, "BEGIN", err, errlen) < 0) return -1;
    snprintf(sql, sizeof sql, "PRAGMA application_id=%d; PRAGMA user_version=%d", STORE_APP_ID,
             STORE_SCHEMA_VERSION);
    if ((from == 1 && exec_sql(db, migrate_1_sql, err, errlen) < 0) ||
        exec_sql(db, schema_sql, err, errlen) < 0 || exec_sql(db, sql, err, errlen) < 0 ||
        exec_sql(db, "COMMIT", err, errlen) < 0) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Opens path and checks it; 0 or -1 (db closed, reason in err). */
static int open_checked(const char *path, bool strict, sqlite3 **out, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_timeout(db, 0);
    int from = 0;
    if (check_file(db, &from, err, errlen) < 0 || setup_schema(db, strict, from, err, errlen) < 0) {
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

/* Moves path (and its -wal/-shm) to path.corrupt-DATE; 0 or -1. */
static int quarantine(const char *path, char *to, size_t tolen, char *err, size_t errlen)
{
    char stamp[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", &tm);
    snprintf(to, tolen, "%s.corrupt-%s", path, stamp);
    if (rename(path, to) < 0) {
        snprintf(err, errlen, "cannot move %s aside: %s", path, strerror(errno));
        return -1;
    }
    static const char *const sfx[] = {"-wal", "-shm"};
    for (size_t i = 0; i < 2; i++) {
        char a[600], b[600];
        snprintf(a, sizeof a, "%s%s", path, sfx[i]);
        snprintf(b, sizeof b, "%s%s", to, sfx[i]);
        if (rename(a, b) < 0 && errno != ENOENT) {
            snprintf(err, errlen, "cannot move %s aside: %s", a, strerror(errno));
            return -1;
        }
    }
    return 0;
}

static int prepare_all(store *st)
{
    for (int i = 0; i < ST__N; i++) {
        if (sqlite3_prepare_v3(st->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &st->st[i],
                               NULL) != SQLITE_OK) {
            set_err(st, "prepare: %s", sqlite3_errmsg(st->db));
            return -1;
        }
    }
    sqlite3_int64 max = 0;
    sqlite3_stmt *s = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT coalesce(max(id),0) FROM messages", -1, &s, NULL) ==
            SQLITE_OK &&
        sqlite3_step(s) == SQLITE_ROW)
        max = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    st->next_msg_id = (uint64_t)max + 1;
    /* bodies nothing points at any more (the broker stopped before it let go) */
    if (sqlite3_exec(st->db, "DELETE FROM messages WHERE refs<=0", NULL, NULL, NULL) != SQLITE_OK) {
        set_err(st, "cleanup: %s", sqlite3_errmsg(st->db));
        return -1;
    }
    return 0;
}

int store_open(store **out, const char *path, const store_opts *opts, store_open_info *info,
               char *err, size_t errlen)
{
    store_open_info dummy;
    if (!info) info = &dummy;
    memset(info, 0, sizeof *info);
    struct stat sb;
    info->created = stat(path, &sb) < 0;
    if (!info->created && !S_ISREG(sb.st_mode)) {
        snprintf(err, errlen, "%s is not a regular file", path);
        return STORE_ERR_OPEN;
    }
    sqlite3 *db = NULL;
    bool full = opts->strict && !opts->external_sync;
    if (open_checked(path, full, &db, err, errlen) < 0) {
        if (!opts->quarantine || info->created) return STORE_ERR_CORRUPT;
        snprintf(info->reason, sizeof info->reason, "%s", err);
        if (quarantine(path, info->moved_to, sizeof info->moved_to, err, errlen) < 0)
            return STORE_ERR_OPEN;
        info->quarantined = true;
        if (open_checked(path, full, &db, err, errlen) < 0) return STORE_ERR_OPEN;
    }
    store *st = calloc(1, sizeof *st);
    if (!st) {
        sqlite3_close(db);
        snprintf(err, errlen, "out of memory");
        return STORE_ERR_ALLOC;
    }
    st->db = db;
    st->wal_fd = -1;
    if (opts->external_sync) {
        /* the schema transaction above created the log; SQLite never removes
         * or truncates it while the database is open, so the fd stays valid */
        char wal[PATH_MAX];
        snprintf(wal, sizeof wal, "%s-wal", path);
        st->wal_fd = open(wal, O_RDONLY | O_CLOEXEC);
        if (st->wal_fd < 0) {
            snprintf(err, errlen, "cannot open %s: %s", wal, strerror(errno));
            store_close(st);
            return STORE_ERR_OPEN;
        }
    }
    if (prepare_all(st) < 0) {
        snprintf(err, errlen, "%s", st->err);
        store_close(st);
        return STORE_ERR_OPEN;
    }
    *out = st;
    return STORE_OK;
}

/* Releases the bodies of the ops applied (the first n at entry). A release
 * hook may journal new ops (store_msg_gc); those stay for the next commit. */
static void release_all(store *st)
{
    size_t n = st->nops;
    for (size_t i = 0; i < n; i++)
        if (st->ops[i].kind == OP_MSG_ADD && st->release) st->release(st->ops[i].owner);
    if (st->nops > n) memmove(st->ops, st->ops + n, (st->nops - n) * sizeof *st->ops);
    st->nops -= n;
    if (st->nops == 0) st->alen = 0;
}

void store_close(store *st)
{
    if (!st) return;
    if (st->nops && st->db) (void)store_commit(st);
    release_all(st);
    for (int i = 0; i < ST__N; i++)
        sqlite3_finalize(st->st[i]);
    sqlite3_close(st->db);
    if (st->wal_fd >= 0) close(st->wal_fd);
    free(st->ops);
    free(st->arena);
    free(st);
}

/* ---- the journal ---------------------------------------------------------- */

static struct op *op_new(store *st, enum op_kind kind)
{
    if (st->nops == st->cap_ops) {
        size_t ncap = st->cap_ops ? st->cap_ops * 2 : 64;
        struct op *n = realloc(st->ops, ncap * sizeof *n);
        if (!n) return NULL;
        st->ops = n;
        st->cap_ops = ncap;
    }
    struct op *o = &st->ops[st->nops];
    memset(o, 0, sizeof *o);
    o->kind = (uint8_t)kind;
    o->s2len = SIZE_MAX;
    o->s3len = SIZE_MAX;
    return o;
}

/* Copies s into the arena; its offset in *off. 0 or -1. */
static int arena_put(store *st, const char *s, size_t len, size_t *off)
{
    if (st->alen + len + 1 > st->acap) {
        size_t ncap = st->acap ? st->acap : 4096;
        while (ncap < st->alen + len + 1)
            ncap *= 2;
        char *n = realloc(st->arena, ncap);
        if (!n) return -1;
        st->arena = n;
        st->acap = ncap;
    }
    *off = st->alen;
    if (len) memcpy(st->arena + st->alen, s, len);
    st->arena[st->alen + len] = 0;
    st->alen += len + 1;
    return 0;
}

/* A new op with up to two copied strings (b may be NULL: SQL NULL). */
static struct op *op_strings(store *st, enum op_kind kind, const char *a, size_t alen,
                             const char *b, size_t blen)
{
    if (alen > 65535 || (b && blen > 65535)) return NULL;
    struct op *o = op_new(st, kind);
    if (!o) return NULL;
    size_t mark = st->alen;
    if (arena_put(st, a, alen, &o->s1) < 0 || (b && arena_put(st, b, blen, &o->s2) < 0)) {
        st->alen = mark;
        return NULL;
    }
    o->s1len = alen;
    if (b) o->s2len = blen;
    st->nops++;
    return o;
}

int store_msg_add(store *st, uint64_t *id, const store_msg *m, void *owner)
{
    if (m->topic_len > 65535 || m->payload_len > INT32_MAX || m->props_len > INT32_MAX ||
        m->expires < 0)
        return STORE_ERR_ARG;
    struct op *o = op_new(st, OP_MSG_ADD);
    if (!o) return STORE_ERR_ALLOC;
    o->id = st->next_msg_id++;
    o->topic = m->topic;
    o->tlen = m->topic_len;
    o->payload = m->payload;
    o->plen = m->payload_len;
    o->props = m->props;
    o->prlen = m->props_len;
    o->expires = m->expires;
    o->qos = m->qos;
    o->retain = m->retain;
    o->owner = owner;
    st->nops++;
    *id = o->id;
    return STORE_OK;
}

#define OP_OR_FAIL(o)                                                                              \
    do {                                                                                           \
        if (!(o)) return STORE_ERR_ALLOC;                                                          \
    } while (0)

int store_retain_set(store *st, const char *topic, size_t tlen, uint64_t msg_id,
                     const store_source *src)
{
    const char *id = src ? src->client_id : NULL, *user = id ? src->username : NULL;
    size_t mark = st->alen, ulen = user ? strlen(user) : 0;
    if (ulen > 65535) return STORE_ERR_ARG;
    struct op *o = op_strings(st, OP_RETAIN_SET, topic, tlen, id, id ? strlen(id) : 0);
    OP_OR_FAIL(o);
    if (user && arena_put(st, user, ulen, &o->s3) < 0) {
        st->nops--;
        st->alen = mark;
        return STORE_ERR_ALLOC;
    }
    if (user) o->s3len = ulen;
    o->id = msg_id;
    o->pid = id ? src->port : 0;
    return STORE_OK;
}

int store_retain_clear(store *st, const char *topic, size_t tlen)
{
    OP_OR_FAIL(op_strings(st, OP_RETAIN_CLEAR, topic, tlen, NULL, 0));
    return STORE_OK;
}

int store_session_put(store *st, const char *client_id, const char *username,
                      uint32_t expiry_interval, uint16_t listener_port)
{
    struct op *o = op_strings(st, OP_SESSION_PUT, client_id, strlen(client_id), username,
                              username ? strlen(username) : 0);
    OP_OR_FAIL(o);
    o->expiry = expiry_interval;
    o->pid = listener_port;
    return STORE_OK;
}

int store_session_del(store *st, const char *client_id)
{
    OP_OR_FAIL(op_strings(st, OP_SESSION_DEL, client_id, strlen(client_id), NULL, 0));
    return STORE_OK;
}

int store_sub_put(store *st, const char *client_id, const char *filter, size_t flen, uint8_t qos,
                  uint32_t sub_id)
{
    struct op *o = op_strings(st, OP_SUB_PUT, client_id, strlen(client_id), filter, flen);
    OP_OR_FAIL(o);
    o->qos = qos;
    o->expiry = sub_id; /* (the field of a session's expiry) */
    return STORE_OK;
}

int store_sub_del(store *st, const char *client_id, const char *filter, size_t flen)
{
    OP_OR_FAIL(op_strings(st, OP_SUB_DEL, client_id, strlen(client_id), filter, flen));
    return STORE_OK;
}

int store_delivery_add(store *st, const char *client_id, uint64_t seq, uint64_t msg_id, uint8_t qos,
                       bool retain, enum store_dstate state, uint16_t pid)
{
    struct op *o = op_strings(st, OP_DELIV_ADD, client_id, strlen(client_id), NULL, 0);
    OP_OR_FAIL(o);
    o->seq = seq;
    o->id = msg_id;
    o->qos = qos;
    o->retain = retain;
    o->state = (uint8_t)state;
    o->pid = pid;
    return STORE_OK;
}

int store_delivery_update(store *st, const char *client_id, uint64_t seq, enum store_dstate state,
                          uint16_t pid)
{
    struct op *o = op_strings(st, OP_DELIV_UPDATE, client_id, strlen(client_id), NULL, 0);
    OP_OR_FAIL(o);
    o->seq = seq;
    o->state = (uint8_t)state;
    o->pid = pid;
    return STORE_OK;
}

int store_delivery_del(store *st, const char *client_id, uint64_t seq)
{
    struct op *o = op_strings(st, OP_DELIV_DEL, client_id, strlen(client_id), NULL, 0);
    OP_OR_FAIL(o);
    o->seq = seq;
    return STORE_OK;
}

int store_qos2_in_add(store *st, const char *client_id, uint16_t pid)
{
    struct op *o = op_strings(st, OP_Q2_ADD, client_id, strlen(client_id), NULL, 0);
    OP_OR_FAIL(o);
    o->pid = pid;
    return STORE_OK;
}

int store_msg_gc(store *st, uint64_t id)
{
    struct op *o = op_new(st, OP_MSG_GC);
    if (!o) return STORE_ERR_ALLOC;
    o->id = id;
    st->nops++;
    return STORE_OK;
}

int store_qos2_in_del(store *st, const char *client_id, uint16_t pid)
{
    struct op *o = op_strings(st, OP_Q2_DEL, client_id, strlen(client_id), NULL, 0);
    OP_OR_FAIL(o);
    o->pid = pid;
    return STORE_OK;
}

/* ---- commit --------------------------------------------------------------- */

int store_sync(store *st)
{
    if (st->wal_fd < 0) return STORE_OK; /* FULL: every commit was synced */
    return fdatasync(st->wal_fd) == 0 ? STORE_OK : STORE_ERR_IO;
}

/* Runs a prepared statement to completion; SQLite result code. */
static int run(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? SQLITE_OK : rc;
}

static void bind_s1(store *st, sqlite3_stmt *s, int col, const struct op *o)
{
    sqlite3_bind_text(s, col, st->arena + o->s1, (int)o->s1len, SQLITE_STATIC);
}

static void bind_s2(store *st, sqlite3_stmt *s, int col, const struct op *o)
{
    if (o->s2len == SIZE_MAX)
        sqlite3_bind_null(s, col);
    else
        sqlite3_bind_text(s, col, st->arena + o->s2, (int)o->s2len, SQLITE_STATIC);
}

static int apply_msg(store *st, const struct op *o)
{
    sqlite3_stmt *s = st->st[ST_MSG_ADD];
    sqlite3_bind_int64(s, 1, (sqlite3_int64)o->id);
    sqlite3_bind_text(s, 2, o->topic, (int)o->tlen, SQLITE_STATIC);
    sqlite3_bind_blob(s, 3, o->plen ? (const void *)o->payload : "", (int)o->plen, SQLITE_STATIC);
    sqlite3_bind_int(s, 4, o->qos);
    sqlite3_bind_int(s, 5, o->retain);
    if (o->prlen)
        sqlite3_bind_blob(s, 6, o->props, (int)o->prlen, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, 6);
    sqlite3_bind_int64(s, 7, (sqlite3_int64)o->expires);
    return run(s);
}

static int apply_session_del(store *st, const struct op *o)
{
    static const enum stmt_id order[] = {ST_SESSION_DEL_D, ST_SESSION_DEL_S, ST_SESSION_DEL_Q,
                                         ST_SESSION_DEL};
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        bind_s1(st, st->st[order[i]], 1, o);
        int rc = run(st->st[order[i]]);
        if (rc != SQLITE_OK) return rc;
    }
    return SQLITE_OK;
}

static int apply_delivery(store *st, const struct op *o)
{
    sqlite3_stmt *s;
    if (o->kind == OP_DELIV_ADD) {
        s = st->st[ST_DELIV_ADD];
        bind_s1(st, s, 1, o);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)o->seq);
        sqlite3_bind_int64(s, 3, (sqlite3_int64)o->id);
        sqlite3_bind_int(s, 4, o->qos);
        sqlite3_bind_int(s, 5, o->retain);
        sqlite3_bind_int(s, 6, o->state);
        sqlite3_bind_int(s, 7, o->pid);
    } else if (o->kind == OP_DELIV_UPDATE) {
        s = st->st[ST_DELIV_UPDATE];
        sqlite3_bind_int(s, 1, o->state);
        sqlite3_bind_int(s, 2, o->pid);
        bind_s1(st, s, 3, o);
        sqlite3_bind_int64(s, 4, (sqlite3_int64)o->seq);
    } else {
        s = st->st[ST_DELIV_DEL];
        bind_s1(st, s, 1, o);
        sqlite3_bind_int64(s, 2, (sqlite3_int64)o->seq);
    }
    return run(s);
}

/* Statements of the simple ops: (client id or topic, then one more value). */
static int apply_simple(store *st, const struct op *o)
{
    sqlite3_stmt *s;
    switch (o->kind) {
    case OP_RETAIN_SET:
        s = st->st[ST_RETAIN_SET];
        sqlite3_bind_int64(s, 2, (sqlite3_int64)o->id);
        bind_s2(st, s, 3, o);
        if (o->s3len == SIZE_MAX)
            sqlite3_bind_null(s, 4);
        else
            sqlite3_bind_text(s, 4, st->arena + o->s3, (int)o->s3len, SQLITE_STATIC);
        sqlite3_bind_int(s, 5, o->pid);
        break;
    case OP_RETAIN_CLEAR:
        s = st->st[ST_RETAIN_CLEAR];
        break;
    case OP_SESSION_PUT:
        s = st->st[ST_SESSION_PUT];
        bind_s2(st, s, 2, o);
        sqlite3_bind_int64(s, 3, o->expiry);
        sqlite3_bind_int(s, 4, o->pid);
        break;
    case OP_SUB_PUT:
        s = st->st[ST_SUB_PUT];
        bind_s2(st, s, 2, o);
        sqlite3_bind_int(s, 3, o->qos);
        sqlite3_bind_int64(s, 4, o->expiry);
        break;
    case OP_SUB_DEL:
        s = st->st[ST_SUB_DEL];
        bind_s2(st, s, 2, o);
        break;
    case OP_Q2_ADD:
    case OP_Q2_DEL:
        s = st->st[o->kind == OP_Q2_ADD ? ST_Q2_ADD : ST_Q2_DEL];
        sqlite3_bind_int(s, 2, o->pid);
        break;
    default:
        return SQLITE_MISUSE;
    }
    bind_s1(st, s, 1, o);
    return run(s);
}

static int apply_op(store *st, const struct op *o)
{
    switch (o->kind) {
    case OP_MSG_ADD:
        return apply_msg(st, o);
    case OP_SESSION_DEL:
        return apply_session_del(st, o);
    case OP_DELIV_ADD:
    case OP_DELIV_UPDATE:
    case OP_DELIV_DEL:
        return apply_delivery(st, o);
    case OP_MSG_GC:
        sqlite3_bind_int64(st->st[ST_GC], 1, (sqlite3_int64)o->id);
        return run(st->st[ST_GC]);
    default:
        return apply_simple(st, o);
    }
}

static int commit_fail(store *st, const char *what, int rc)
{
    set_err(st, "%s: %s", what, sqlite3_errstr(rc));
    if (!sqlite3_get_autocommit(st->db)) sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return STORE_ERR_IO;
}

int store_commit(store *st)
{
    if (st->nops == 0) return STORE_OK;
    int rc = run(st->st[ST_BEGIN]);
    if (rc != SQLITE_OK) return commit_fail(st, "begin", rc);
    for (size_t i = 0; i < st->nops; i++) {
        rc = apply_op(st, &st->ops[i]);
        if (rc != SQLITE_OK) return commit_fail(st, "write", rc);
    }
    rc = run(st->st[ST_COMMIT]);
    if (rc != SQLITE_OK) return commit_fail(st, "commit", rc);
    st->err[0] = 0;
    release_all(st);
    return STORE_OK;
}

/* ---- reads ---------------------------------------------------------------- */

static int read_fail(store *st, sqlite3_stmt *s, int rc)
{
    set_err(st, "read: %s", sqlite3_errmsg(st->db));
    sqlite3_finalize(s);
    return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB ? STORE_ERR_CORRUPT : STORE_ERR_IO;
}

static const char *col_text(sqlite3_stmt *s, int col, size_t *len)
{
    const char *t = (const char *)sqlite3_column_text(s, col);
    if (len) *len = (size_t)sqlite3_column_bytes(s, col);
    return t;
}

/* Fills m from columns first.. (id, topic, payload, qos, retain, props,
 * expires). */
static void col_msg(sqlite3_stmt *s, int first, store_msg *m)
{
    m->id = (uint64_t)sqlite3_column_int64(s, first);
    m->topic = col_text(s, first + 1, &m->topic_len);
    m->payload = sqlite3_column_blob(s, first + 2);
    m->payload_len = (size_t)sqlite3_column_bytes(s, first + 2);
    m->qos = (uint8_t)sqlite3_column_int(s, first + 3);
    m->retain = sqlite3_column_int(s, first + 4) != 0;
    m->props = sqlite3_column_blob(s, first + 5);
    m->props_len = m->props ? (size_t)sqlite3_column_bytes(s, first + 5) : 0;
    m->expires = (int64_t)sqlite3_column_int64(s, first + 6);
}

typedef int (*row_fn)(store *st, sqlite3_stmt *s, const store_load_cbs *cbs, void *ud);

static int row_retained(store *st, sqlite3_stmt *s, const store_load_cbs *cbs, void *ud)
{
    store_msg m;
    col_msg(s, 0, &m);
    store_source src = {col_text(s, 7, NULL), col_text(s, 8, NULL),
                        (uint16_t)sqlite3_column_int(s, 9)};
    return cbs->retained(ud, &m, src.client_id ? &src : NULL);
}

static int row_session(store *st, sqlite3_stmt *s, const store_load_cbs *cbs, void *ud)
{
    store_session ss = {col_text(s, 0, NULL), col_text(s, 1, NULL),
                        (uint32_t)sqlite3_column_int64(s, 2), (uint16_t)sqlite3_column_int(s, 3)};
    return cbs->session(ud, &ss);
}

static int row_sub(store *st, sqlite3_stmt *s, const store_load_cbs *cbs, void *ud)
{
    return cbs->sub(ud, col_text(s, 0, NULL), col_text(s, 1, NULL),
                    (uint8_t)sqlite3_column_int(s, 2), (uint32_t)sqlite3_column_int64(s, 3));
}

static int row_q2(store *st, sqlite3_stmt *s, const store_load_cbs *cbs, void *ud)
{
    return cbs->qos2_in(ud, col_text(s, 0, NULL), (uint16_t)sqlite3_column_int(s, 1));
}

static int walk(store *st, const char *sql, row_fn fn, const store_load_cbs *cbs, void *ud)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc != SQLITE_OK) return read_fail(st, s, rc);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        int r = fn(st, s, cbs, ud);
        if (r) {
            sqlite3_finalize(s);
            return r;
        }
    }
    if (rc != SQLITE_DONE) return read_fail(st, s, rc);
    sqlite3_finalize(s);
    return STORE_OK;
}

int store_load(store *st, const store_load_cbs *cbs, void *ud)
{
    int rc = store_commit(st);
    if (rc != STORE_OK) return rc;
    static const struct {
        size_t cb_off;
        const char *sql;
        row_fn fn;
    } parts[] = {
        {offsetof(store_load_cbs, retained),
         "SELECT m.id,m.topic,m.payload,m.qos,m.retain,m.props,m.expires,r.source_id,"
         "r.source_user,r.source_port FROM retained r JOIN messages m"
         " ON m.id=r.msg_id",
         row_retained},
        {offsetof(store_load_cbs, session),
         "SELECT client_id,username,expiry,listener_port FROM sessions", row_session},
        {offsetof(store_load_cbs, sub), "SELECT client_id,filter,qos,sub_id FROM subscriptions",
         row_sub},
        {offsetof(store_load_cbs, qos2_in), "SELECT client_id,pid FROM qos2_in", row_q2},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        const void *cb = *(const void *const *)((const char *)cbs + parts[i].cb_off);
        if (!cb) continue;
        rc = walk(st, parts[i].sql, parts[i].fn, cbs, ud);
        if (rc) return rc;
    }
    return STORE_OK;
}

int store_deliveries(store *st, const char *client_id, uint64_t after_seq, size_t max,
                     int (*fn)(void *ud, const store_delivery *d), void *ud)
{
    int rc = store_commit(st);
    if (rc != STORE_OK) return rc;
    sqlite3_stmt *s = NULL;
    rc = sqlite3_prepare_v2(
        st->db,
        "SELECT d.seq,d.qos,d.retain,d.state,d.pid,"
        "m.id,m.topic,m.payload,m.qos,m.retain,m.props,m.expires FROM deliveries d"
        " JOIN messages m ON m.id=d.msg_id"
        " WHERE d.client_id=? AND d.seq>? ORDER BY d.seq LIMIT ?",
        -1, &s, NULL);
    if (rc != SQLITE_OK) return read_fail(st, s, rc);
    sqlite3_bind_text(s, 1, client_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, (sqlite3_int64)after_seq);
    sqlite3_bind_int64(s, 3, max ? (sqlite3_int64)max : -1);
    int n = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_delivery d = {.client_id = client_id,
                            .seq = (uint64_t)sqlite3_column_int64(s, 0),
                            .qos = (uint8_t)sqlite3_column_int(s, 1),
                            .retain = sqlite3_column_int(s, 2) != 0,
                            .state = (enum store_dstate)sqlite3_column_int(s, 3),
                            .pid = (uint16_t)sqlite3_column_int(s, 4)};
        col_msg(s, 5, &d.msg);
        n++;
        if (fn(ud, &d)) break;
    }
    if (rc != SQLITE_DONE && rc != SQLITE_ROW) return read_fail(st, s, rc);
    sqlite3_finalize(s);
    return n;
}

static int count_one(store *st, const char *sql, uint64_t *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) return read_fail(st, s, rc);
    *out = (uint64_t)sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return STORE_OK;
}

int store_count(store *st, store_counts *out)
{
    int rc = store_commit(st);
    if (rc != STORE_OK) return rc;
    static const struct {
        const char *sql;
        size_t off;
    } q[] = {
        {"SELECT count(*) FROM messages", offsetof(store_counts, messages)},
        {"SELECT count(*) FROM retained", offsetof(store_counts, retained)},
        {"SELECT count(*) FROM sessions", offsetof(store_counts, sessions)},
        {"SELECT count(*) FROM subscriptions", offsetof(store_counts, subscriptions)},
        {"SELECT count(*) FROM deliveries", offsetof(store_counts, deliveries)},
        {"SELECT count(*) FROM qos2_in", offsetof(store_counts, qos2_in)},
        {"SELECT coalesce(max(seq),0) FROM deliveries", offsetof(store_counts, max_seq)},
    };
    for (size_t i = 0; i < sizeof q / sizeof q[0]; i++) {
        rc = count_one(st, q[i].sql, (uint64_t *)((char *)out + q[i].off));
        if (rc) return rc;
    }
    return STORE_OK;
}

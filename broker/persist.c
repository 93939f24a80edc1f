/*
 * persist.c -- durable state: the sessions' journal on store/, group commit
 * per loop iteration, startup load, and holding acknowledgements while a
 * commit fails (see persist.h).
 */
#include "broker/persist.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "broker/broker.h"
#include "broker/conn.h"
#include "broker/log.h"
#include "broker/session.h"
#include "broker/shared.h"
#include "broker/tree.h"
#include "store/store.h"

/* While commits fail, try again at most this often (each try rewrites the
 * whole journal). */
#define RETRY_SECONDS 1.0
#define DEFAULT_FILE "secbroker.db"

/* Strict mode commits on the loop thread without waiting for the disk and
 * hands the fdatasync to one helper thread (as Redis does for its AOF), so
 * the loop keeps reading and routing while the disk works. Batches are
 * numbered (epochs): output that must wait is held until the helper says
 * its epoch is on disk. At most two epochs are open: the one being synced
 * and the one gathering the changes meanwhile. */
typedef struct persist {
    store *st;
    bool strict;
    bool save_requested;
    bool failing;          /* the last commit or sync failed: holds stay */
    double fail_since;     /* when the failing episode began */
    double next_try;       /* no commit before this (failing, or interval mode) */
    uint64_t failed_tries; /* commits that failed in this episode */
    uint64_t epoch;        /* batches committed; epoch + 1 is gathering */
    bool syncing;          /* the helper is syncing `epoch` */
    int efd;               /* eventfd: the helper has finished a sync */
    pthread_t thread;
    bool thread_up;
    pthread_mutex_t mu; /* guards the four fields below */
    pthread_cond_t cv;
    uint64_t sync_target, synced;
    int sync_rc;
    bool quit;
    char path[PATH_MAX];
    const double *now; /* the broker's monotonic clock (message expiry) */
} persist;

static persist *P(const broker *b)
{
    return b->persist;
}

/* ---- the journal ------------------------------------------------------------- */

static void store_failed(persist *p, const char *what, int rc)
{
    /* only out of memory for the journal: the change is lost, so say so */
    log_msg(LL_ERROR, "persistence: could not journal %s (%d): it is not durable", what, rc);
}

/* MQTT 5 message expiry as wall-clock seconds for the store (it outlives
 * the monotonic clock), 0 = never. */
static int64_t wall_expiry(const persist *p, const msg *m)
{
    if (m->expire_at <= 0) return 0;
    double left = m->expire_at - *p->now;
    return (int64_t)time(NULL) + (left > 0 ? (int64_t)(left + 0.999) : 0);
}

/* The message's row: stored once however many sessions hold it. */
static uint64_t msg_row(persist *p, msg *m)
{
    if (m->store_id) return m->store_id;
    uint64_t id = 0;
    store_msg sm = {.topic = msg_topic(m),
                    .topic_len = m->topic_len,
                    .payload = msg_payload(m),
                    .payload_len = m->payload_len,
                    .qos = m->qos,
                    .retain = m->retain,
                    .props = msg_props(m),
                    .props_len = m->props_len,
                    .expires = wall_expiry(p, m)};
    int rc = store_msg_add(p->st, &id, &sm, msg_ref(m));
    if (rc != STORE_OK) {
        msg_unref(m);
        store_failed(p, "a message", rc);
        return 0;
    }
    m->store_id = id;
    return id;
}

static enum store_dstate dstate(const outmsg *o)
{
    if (o->state == OUT_WAIT_PUBCOMP) return STORE_PUBREL_SENT;
    return o->state ? STORE_PUBLISH_SENT : STORE_QUEUED;
}

static void j_delivery(void *ctx, session *s, const outmsg *o, enum journal_delivery what)
{
    persist *p = ctx;
    int rc;
    if (what == JD_ADD) {
        uint64_t id = msg_row(p, o->m);
        if (!id) return;
        rc = store_delivery_add(p->st, s->client_id, o->seq, id, o->qos, o->retain, dstate(o),
                                o->pid);
    } else if (what == JD_UPDATE) {
        rc = store_delivery_update(p->st, s->client_id, o->seq, dstate(o), o->pid);
    } else {
        rc = store_delivery_del(p->st, s->client_id, o->seq);
    }
    if (rc != STORE_OK) store_failed(p, "a delivery", rc);
}

static void j_qos2_in(void *ctx, session *s, uint16_t pid, bool add)
{
    persist *p = ctx;
    int rc = add ? store_qos2_in_add(p->st, s->client_id, pid)
                 : store_qos2_in_del(p->st, s->client_id, pid);
    if (rc != STORE_OK) store_failed(p, "a QoS 2 packet id", rc);
}

static void j_sub(void *ctx, session *s, const char *filter, size_t flen, uint8_t qos,
                  uint32_t sub_id, bool add)
{
    persist *p = ctx;
    int rc = add ? store_sub_put(p->st, s->client_id, filter, flen, qos, sub_id)
                 : store_sub_del(p->st, s->client_id, filter, flen);
    if (rc != STORE_OK) store_failed(p, "a subscription", rc);
}

static void j_destroyed(void *ctx, session *s)
{
    persist *p = ctx;
    int rc = store_session_del(p->st, s->client_id);
    if (rc != STORE_OK) store_failed(p, "a session's removal", rc);
}

static const session_journal journal = {j_delivery, j_qos2_in, j_sub, j_destroyed};

/* The store is done with a body it borrowed; the broker lets go of a row. */
static void release_body(void *owner)
{
    msg_unref(owner);
}

static void msg_freed(void *ctx, msg *m)
{
    persist *p = ctx;
    if (store_msg_gc(p->st, m->store_id) != STORE_OK) store_failed(p, "a message's release", -1);
}

/* ---- loading ------------------------------------------------------------------- */

/* Message bodies by row id while loading, so a body queued for many
 * sessions (and retained) is one msg in memory again. */
typedef struct {
    uint64_t *ids;
    msg **msgs;
    size_t cap, count;
} msg_cache;

static size_t cache_slot(const msg_cache *c, uint64_t id)
{
    size_t i = (size_t)(id * 0x9E3779B97F4A7C15ULL) & (c->cap - 1);
    while (c->ids[i] && c->ids[i] != id)
        i = (i + 1) & (c->cap - 1);
    return i;
}

static int cache_grow(msg_cache *c)
{
    msg_cache n = {calloc(c->cap ? c->cap * 2 : 1024, sizeof(uint64_t)), NULL,
                   c->cap ? c->cap * 2 : 1024, c->count};
    n.msgs = calloc(n.cap, sizeof(msg *));
    if (!n.ids || !n.msgs) {
        free(n.ids);
        free(n.msgs);
        return BK_ERR_NOMEM;
    }
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->ids[i]) continue;
        size_t j = cache_slot(&n, c->ids[i]);
        n.ids[j] = c->ids[i];
        n.msgs[j] = c->msgs[i];
    }
    free(c->ids);
    free(c->msgs);
    *c = n;
    return BK_OK;
}

/* The msg of row sm (the cache keeps a reference), or NULL when out of
 * memory. now/wall: the monotonic and wall clocks, to restore its expiry. */
static msg *cache_get(msg_cache *c, const store_msg *sm, double now, int64_t wall)
{
    if ((c->count + 1) * 2 > c->cap && cache_grow(c) != BK_OK) return NULL;
    size_t i = cache_slot(c, sm->id);
    if (c->ids[i]) return c->msgs[i];
    msg *m = msg_new_props((const uint8_t *)sm->topic, (uint16_t)sm->topic_len, sm->props,
                           sm->props_len, sm->payload, sm->payload_len, sm->qos, sm->retain);
    if (!m) return NULL;
    m->store_id = sm->id;
    if (sm->expires > 0) m->expire_at = now + (double)(sm->expires - wall);
    c->ids[i] = sm->id;
    c->msgs[i] = m;
    c->count++;
    return m;
}

static void cache_free(msg_cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->ids[i]) msg_unref(c->msgs[i]);
    free(c->ids);
    free(c->msgs);
}

typedef struct {
    broker *b;
    msg_cache cache;
    int64_t wall; /* time() at load: stored expiries are wall-clock */
    uint64_t retained, sessions, subs, deliveries, qos2, expired;
} loader;

/* Has the stored message expired (MQTT 5 Message Expiry Interval)? */
static bool row_expired(const loader *l, const store_msg *sm)
{
    return sm->expires > 0 && sm->expires <= l->wall;
}

static msg *loaded_msg(loader *l, const store_msg *sm)
{
    return cache_get(&l->cache, sm, l->b->now, l->wall);
}

/* The index of the first listener on port (the source's listener after a
 * restart, as Mosquitto finds it), -1 when none has it now. */
static int listener_of_port(const broker *b, uint16_t port)
{
    for (size_t i = 0; port && i < b->cfg->nlisteners; i++)
        if (b->cfg->listeners[i].port == port) return (int)i;
    return -1;
}

static int load_retained(void *ud, const store_msg *sm, const store_source *src)
{
    loader *l = ud;
    if (row_expired(l, sm)) { /* dropped at load, and from the file */
        if (store_retain_clear(P(l->b)->st, sm->topic, sm->topic_len) != STORE_OK)
            return BK_ERR_NOMEM;
        l->expired++;
        return 0;
    }
    msg *m = loaded_msg(l, sm);
    if (m && src && !m->source &&
        msg_set_source(m, src->client_id, src->username, listener_of_port(l->b, src->port),
                       src->port) != BK_OK)
        return BK_ERR_NOMEM;
    if (!m || tree_retain(l->b->root, m, &l->b->retained_count) != BK_OK) return BK_ERR_NOMEM;
    l->retained++;
    return 0;
}

static int load_session(void *ud, const store_session *ss)
{
    loader *l = ud;
    session *s = session_create(&l->b->sessions, ss->client_id, strlen(ss->client_id), false);
    if (!s) return BK_ERR_NOMEM;
    s->durable = true;
    s->expiry_interval = ss->expiry_interval;
    /* MQTT 5: offline since the restart, so its expiry counts from now */
    if (s->expiry_interval != 0xFFFFFFFFu) s->expires_at = l->b->now + s->expiry_interval;
    if (ss->username && !(s->username = strdup(ss->username))) return BK_ERR_NOMEM;
    s->listener = (int16_t)listener_of_port(l->b, ss->listener_port); /* its ACL till it returns */
    l->sessions++;
    return 0;
}

static session *loaded_session(loader *l, const char *client_id)
{
    session *s = session_find(&l->b->sessions, client_id, strlen(client_id));
    if (!s)
        log_msg(LL_WARNING, "persistence: rows for unknown session '%s' ignored",
                log_esc(client_id));
    return s;
}

static int load_sub(void *ud, const char *client_id, const char *filter, uint8_t qos,
                    uint32_t sub_id)
{
    loader *l = ud;
    session *s = loaded_session(l, client_id);
    sub_rec *rec;
    const char *g, *f;
    size_t glen, flen;
    bool valid;
    if (!s) return 0;
    if (shared_parse(filter, strlen(filter), &g, &glen, &f, &flen, &valid)) {
        /* a shared subscription: the membership lives in shared.c */
        if (valid && shared_join(l->b, s, g, glen, f, flen, qos, sub_id) != BK_OK)
            return BK_ERR_NOMEM;
    } else if (session_subscribe(s, l->b->root, filter, strlen(filter), qos, &rec) != BK_OK) {
        return BK_ERR_NOMEM;
    } else {
        session_set_sub_id(s, rec, sub_id);
    }
    l->subs++;
    return 0;
}

static int load_qos2(void *ud, const char *client_id, uint16_t pid)
{
    loader *l = ud;
    session *s = loaded_session(l, client_id);
    if (!s) return 0;
    if (session_qos2_in_add(s, pid) != BK_OK) return BK_ERR_NOMEM;
    l->qos2++;
    return 0;
}

typedef struct {
    loader *l;
    session *s;
} delivery_ctx;

static int load_delivery(void *ud, const store_delivery *d)
{
    delivery_ctx *dc = ud;
    if (row_expired(dc->l, &d->msg)) { /* dropped at load, and from the file */
        if (d->seq >= dc->s->next_seq) dc->s->next_seq = d->seq + 1;
        if (store_delivery_del(P(dc->l->b)->st, dc->s->client_id, d->seq) != STORE_OK)
            return BK_ERR_NOMEM;
        dc->l->expired++;
        return 0;
    }
    msg *m = loaded_msg(dc->l, &d->msg);
    static const uint8_t sent_state[3][3] = {
        /* STORE_QUEUED, STORE_PUBLISH_SENT, STORE_PUBREL_SENT by QoS */
        {0, 0, 0},
        {0, OUT_WAIT_PUBACK, OUT_WAIT_PUBACK},
        {0, OUT_WAIT_PUBREC, OUT_WAIT_PUBCOMP},
    };
    if (!m || d->qos < 1 || d->qos > 2 || d->state > STORE_PUBREL_SENT) return BK_ERR_NOMEM;
    uint8_t state = sent_state[d->qos][d->state];
    if (session_restore_delivery(dc->s, m, d->seq, d->qos, d->retain, state, d->pid) != BK_OK)
        return BK_ERR_NOMEM;
    dc->l->deliveries++;
    return 0;
}

/* Every durable session's deliveries, in order. */
static int load_deliveries(persist *p, loader *l)
{
    uint32_t it = 0;
    dict_entry *e;
    while ((e = dict_next(&l->b->sessions.ids, &it))) {
        delivery_ctx dc = {l, e->val};
        int rc = store_deliveries(p->st, dc.s->client_id, 0, 0, load_delivery, &dc);
        if (rc < 0) return rc;
    }
    return BK_OK;
}

static double mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int load_all(persist *p, broker *b)
{
    loader l = {.b = b, .wall = (int64_t)time(NULL)};
    store_load_cbs cbs = {load_retained, load_session, load_sub, load_qos2};
    double t0 = mono_seconds();
    int rc = store_load(p->st, &cbs, &l);
    if (rc == STORE_OK) rc = load_deliveries(p, &l);
    cache_free(&l.cache);
    if (rc != STORE_OK) {
        log_msg(LL_ERROR, "persistence: loading %s failed (%s): starting with what was read",
                p->path, rc == BK_ERR_NOMEM ? "out of memory" : store_errmsg(p->st));
        return BK_OK;
    }
    log_msg(LL_NOTICE,
            "persistence: loaded %llu retained messages, %llu sessions (%llu subscriptions, "
            "%llu queued or in-flight messages, %llu QoS 2 ids; %llu expired messages dropped) "
            "from %s in %.0f ms",
            (unsigned long long)l.retained, (unsigned long long)l.sessions,
            (unsigned long long)l.subs, (unsigned long long)l.deliveries,
            (unsigned long long)l.qos2, (unsigned long long)l.expired, p->path,
            (mono_seconds() - t0) * 1000);
    return BK_OK;
}

/* ---- open, commit, close ---------------------------------------------------------- */

static int persist_path(const config *cfg, char *out, size_t len, char *err, size_t errlen)
{
    const char *dir = cfg->persistence_location ? cfg->persistence_location : ".";
    const char *file = cfg->persistence_file ? cfg->persistence_file : DEFAULT_FILE;
    size_t dl = strlen(dir);
    int n = snprintf(out, len, "%s%s%s", dir, dl && dir[dl - 1] == '/' ? "" : "/", file);
    if (n < 0 || (size_t)n >= len) {
        snprintf(err, errlen, "persistence: path %s/%s is too long", dir, file);
        return BK_ERR_CONFIG;
    }
    return BK_OK;
}

static void log_opened(const persist *p, const store_open_info *info)
{
    if (info->quarantined)
        log_msg(LL_ERROR,
                "persistence: %s could not be read (%s); moved it to %s and started with an "
                "empty database",
                p->path, info->reason, info->moved_to);
    log_msg(LL_NOTICE, "persistence: %s %s (persistence_sync %s%s)",
            info->created ? "created" : "opened", p->path,
            p->strict ? "strict: acknowledged means on disk" : "interval",
            p->strict ? "" : ", commits every autosave_interval");
}

static int sync_start(persist *p, broker *b, char *err, size_t errlen);

int persist_open(broker *b, char *err, size_t errlen)
{
    if (!b->cfg->persistence) return BK_OK;
    persist *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return BK_ERR_NOMEM;
    }
    p->strict = b->cfg->persistence_strict;
    p->now = &b->now;
    if (persist_path(b->cfg, p->path, sizeof p->path, err, errlen) != BK_OK) {
        free(p);
        return BK_ERR_CONFIG;
    }
    store_opts o = {.strict = p->strict, .quarantine = true, .external_sync = p->strict};
    p->efd = -1;
    store_open_info info;
    char why[512];
    if (store_open(&p->st, p->path, &o, &info, why, sizeof why) != STORE_OK) {
        snprintf(err, errlen, "persistence: cannot open %s: %s", p->path, why);
        free(p);
        return BK_ERR_IO;
    }
    store_set_release(p->st, release_body);
    b->persist = p;
    log_opened(p, &info);
    if (load_all(p, b) != BK_OK) return BK_ERR_NOMEM;
    b->sessions.journal = &journal;
    b->sessions.journal_ctx = p;
    msg_set_free_hook(msg_freed, p);
    p->next_try = b->now + (p->strict ? 0 : b->cfg->autosave_interval);
    if (p->strict) return sync_start(p, b, err, errlen);
    return BK_OK;
}

size_t persist_pending(const broker *b)
{
    persist *p = P(b);
    return p && p->strict ? store_pending(p->st) : 0;
}

uint64_t persist_gathering_epoch(const broker *b)
{
    persist *p = P(b);
    return p ? p->epoch + 1 : 0;
}

uint64_t persist_hold_epoch(const broker *b)
{
    persist *p = P(b);
    if (!p || !p->strict) return 0;
    if (store_pending(p->st)) return p->epoch + 1;
    return p->syncing || p->failing ? p->epoch : 0;
}

/* ---- the sync helper thread --------------------------------------------------------- */

static void *sync_main(void *arg)
{
    persist *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->sync_target == p->synced)
            pthread_cond_wait(&p->cv, &p->mu);
        if (p->quit) break;
        uint64_t target = p->sync_target;
        pthread_mutex_unlock(&p->mu);
        int rc = store_sync(p->st); /* the one blocking call, off the loop */
        int saved = errno;
        pthread_mutex_lock(&p->mu);
        p->synced = target;
        p->sync_rc = rc == STORE_OK ? 0 : saved;
        uint64_t one = 1;
        if (write(p->efd, &one, sizeof one) < 0) {
            /* cannot happen with a counter eventfd; the loop's tick retries */
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static int sync_start(persist *p, broker *b, char *err, size_t errlen)
{
    p->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = PERSIST_EVENT};
    if (p->efd < 0 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, p->efd, &ev) < 0) {
        snprintf(err, errlen, "persistence: eventfd: %s", strerror(errno));
        return BK_ERR_IO;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (pthread_create(&p->thread, NULL, sync_main, p) != 0) {
        snprintf(err, errlen, "persistence: cannot start the sync thread");
        return BK_ERR_IO;
    }
    p->thread_up = true;
    return BK_OK;
}

static void sync_request(persist *p)
{
    pthread_mutex_lock(&p->mu);
    p->sync_target = p->epoch;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    p->syncing = true;
}

static void sync_stop(persist *p)
{
    if (!p->thread_up) return;
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    p->thread_up = false;
}

void persist_request_save(broker *b)
{
    if (P(b)) P(b)->save_requested = true;
}

/* Is a commit due now? */
static bool commit_due(persist *p, broker *b)
{
    if (p->save_requested) return true;
    if (p->failing) return b->now >= p->next_try;
    if (p->strict) return true;
    if (b->cfg->autosave_on_changes) return store_pending(p->st) >= b->cfg->autosave_interval;
    return b->now >= p->next_try;
}

static void store_failed_sync(persist *p, broker *b, int err)
{
    if (!p->failing) {
        p->failing = true;
        p->fail_since = b->now;
        p->failed_tries = 0;
        log_msg(LL_ERROR,
                "persistence: cannot sync %s to disk (%s): acknowledgements of durable "
                "changes are held back until it works again",
                p->path, strerror(err));
    }
    p->failed_tries++;
    p->next_try = b->now + RETRY_SECONDS;
    p->save_requested = true; /* a new commit + sync at next_try, even if nothing new */
}

static void commit_failed(persist *p, broker *b)
{
    if (!p->failing) {
        p->failing = true;
        p->fail_since = b->now;
        p->failed_tries = 0;
        log_msg(LL_ERROR,
                "persistence: cannot write %s (%s): %s until writing works again; retrying "
                "every %.0f s",
                p->path, store_errmsg(p->st),
                p->strict ? "acknowledgements of durable changes are held back"
                          : "changes since the last save are not durable",
                RETRY_SECONDS);
    }
    p->failed_tries++;
    p->next_try = b->now + RETRY_SECONDS;
}

static void recovered(persist *p, broker *b)
{
    if (!p->failing) return;
    log_msg(LL_NOTICE,
            "persistence: writing %s works again after %.0f s (%llu failed tries); held "
            "acknowledgements released",
            p->path, b->now - p->fail_since, (unsigned long long)p->failed_tries);
    p->failing = false;
}

void persist_before_flush(broker *b)
{
    persist *p = P(b);
    if (!p || p->syncing) return; /* strict: the next batch waits for this sync */
    if (store_pending(p->st) == 0) {
        p->save_requested = false;
        return;
    }
    if (!commit_due(p, b)) return;
    if (store_commit(p->st) != STORE_OK) {
        commit_failed(p, b);
        return;
    }
    p->epoch++;
    p->save_requested = false;
    if (p->strict) {
        sync_request(p); /* holds go when the helper is done: persist_on_synced */
        return;
    }
    recovered(p, b);
    p->next_try = b->now + b->cfg->autosave_interval;
}

void persist_on_synced(broker *b)
{
    persist *p = P(b);
    uint64_t n;
    if (!p || read(p->efd, &n, sizeof n) != sizeof n) return;
    pthread_mutex_lock(&p->mu);
    uint64_t synced = p->synced;
    int rc = p->sync_rc;
    pthread_mutex_unlock(&p->mu);
    if (synced != p->epoch) return; /* an older answer */
    p->syncing = false;
    if (rc) {
        /* Linux may have dropped the unwritten pages: keep every hold and
         * write the next batch on top; the sync is retried with it */
        errno = rc;
        store_failed_sync(p, b, rc);
        return;
    }
    recovered(p, b);
    conn_release_holds(b, synced);
    persist_before_flush(b); /* what gathered meanwhile goes next */
}

void persist_retain(broker *b, msg *m)
{
    persist *p = P(b);
    /* $SYS is the broker's own, rebuilt every sys_interval: never stored */
    if (!p || (m->topic_len >= 5 && memcmp(msg_topic(m), "$SYS/", 5) == 0)) return;
    int rc;
    if (m->payload_len == 0) {
        rc = store_retain_clear(p->st, msg_topic(m), m->topic_len);
    } else {
        uint64_t id = msg_row(p, m);
        if (!id) return;
        const msg_source *ms = m->source;
        store_source src = {ms ? ms->client_id : NULL, ms ? ms->username : NULL, ms ? ms->port : 0};
        rc = store_retain_set(p->st, msg_topic(m), m->topic_len, id, ms ? &src : NULL);
    }
    if (rc != STORE_OK) store_failed(p, "a retained message", rc);
}

void persist_session_attached(broker *b, session *s)
{
    persist *p = P(b);
    if (!p) return;
    if (s->clean) {
        /* MQTT 5: a stored session resumed (or ended by DISCONNECT) with
         * session expiry 0 ends with its connection: it is durable no more */
        if (s->durable) j_destroyed(p, s);
        s->durable = false;
        return;
    }
    s->durable = true;
    uint16_t port = s->listener >= 0 && (size_t)s->listener < b->cfg->nlisteners
                        ? (uint16_t)b->cfg->listeners[s->listener].port
                        : 0;
    int rc = store_session_put(p->st, s->client_id, s->username, s->expiry_interval, port);
    if (rc != STORE_OK) store_failed(p, "a session", rc);
}

void persist_close(broker *b)
{
    persist *p = P(b);
    if (!p) return;
    msg_set_free_hook(NULL, NULL);
    b->sessions.journal = NULL;
    b->sessions.journal_ctx = NULL;
    sync_stop(p);
    size_t n = store_pending(p->st);
    int rc = store_commit(p->st);
    if (rc == STORE_OK) rc = store_sync(p->st);
    if (rc != STORE_OK)
        log_msg(LL_ERROR, "persistence: final commit of %zu changes to %s failed: %s", n, p->path,
                store_errmsg(p->st));
    else
        log_msg(LL_NOTICE, "persistence: %s saved", p->path);
    store_close(p->st);
    if (p->efd >= 0) close(p->efd);
    if (p->thread_up || p->efd >= 0) {
        pthread_mutex_destroy(&p->mu);
        pthread_cond_destroy(&p->cv);
    }
    free(p);
    b->persist = NULL;
}

/*
 * qmgr_ctl.c - the control socket of a running sluice (spool_dir/control,
 * a unix socket, mode 0600) through which `sluice queue` lists and
 * changes the queue. One request line per connection; the answer is
 * "rc N\n" followed by the text or JSON to print.
 */
#include "queue/qmgr.h"
#include "queue/qmgr_int.h"
#include "queue/queue_view.h"
#include "lib/buf.h"
#include "lib/config.h"
#include "lib/log.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CTL_LINE_MAX 512

static struct qmsg *find(struct qmgr *q, const char *qid, struct buf *out)
{
    struct qmsg *m = qid ? dict_get(&q->msgs, qid) : NULL;
    if (m == NULL)
        buf_printf(out, "sluice queue: %s: no such message\n", qid ? qid : "(none)");
    return m;
}

static void ctl_list(struct qmgr *q, bool json, const char *domain, struct buf *out)
{
    size_t pos = 0, n = 0;
    uint64_t bytes = 0;
    const char *key;
    void *val;
    if (json)
        buf_putc(out, '[');
    else if (dict_count(&q->msgs))
        queue_view_text_header(out);
    while (dict_next(&q->msgs, &pos, &key, &val)) {
        struct qmsg *m = val;
        if (domain && !queue_view_has_domain(&m->env, domain))
            continue;
        if (json) {
            if (n)
                buf_putc(out, ',');
            queue_view_json(&m->env, &m->st, out);
        } else {
            queue_view_text(&m->env, &m->st, out);
        }
        n++;
        bytes += m->env.content_length;
    }
    if (json)
        buf_puts(out, "]\n");
    else
        queue_view_text_footer(n, bytes, out);
}

static void ctl_flush(struct qmgr *q, const char *domain, struct buf *out)
{
    size_t pos = 0, n = 0;
    const char *key;
    void *val;
    while (dict_next(&q->msgs, &pos, &key, &val)) {
        struct qmsg *m = val;
        if (domain && !queue_view_has_domain(&m->env, domain))
            continue;
        for (size_t i = 0; i < m->st.nrcpt; i++)
            if (m->st.r[i].status == RS_DEFERRED) {
                m->st.r[i].next_attempt = 0;
                n++;
            }
    }
    pos = 0;
    while (dict_next(&q->dests, &pos, &key, &val))
        ((struct qdest *)val)->paused_until = 0;
    buf_printf(out, "flush: %zu deferred recipient(s) scheduled now\n", n);
    log_svc("qmgr", "flush requested%s%s", domain ? " for " : "", domain ? domain : "");
}

static int ctl_one(struct qmgr *q, const char *cmd, const char *qid, struct buf *out)
{
    struct qmsg *m = find(q, qid, out);
    if (m == NULL)
        return 1;
    if (strcmp(cmd, "hold") == 0 || strcmp(cmd, "release") == 0) {
        m->st.held = strcmp(cmd, "hold") == 0;
        qmgr_save_state(q, m);
        log_svc("qmgr", "%s: %s by the postmaster", m->qid, m->st.held ? "held" : "released");
        if (!m->st.held)
            qmgr_schedule_msg(q, m);
    } else if (strcmp(cmd, "delete") == 0) {
        log_svc("qmgr", "%s: deleted by the postmaster", m->qid);
        qmgr_remove(q, m);
    } else if (strcmp(cmd, "bounce") == 0) {
        for (size_t i = 0; i < m->st.nrcpt; i++) {
            struct rcpt_state *r = &m->st.r[i];
            if (r->status != RS_PENDING && r->status != RS_DEFERRED)
                continue;
            r->status = RS_BOUNCED;
            str_copy(r->dsn, "5.0.0", sizeof(r->dsn));
            str_copy(r->reply, "returned to sender by the postmaster (sluice queue bounce)",
                     sizeof(r->reply));
        }
        m->st.held = false;
        qmgr_save_state(q, m);
        log_svc("qmgr", "%s: returned to sender by the postmaster", m->qid);
        qmgr_msg_check_done(q, m);
    } else {
        buf_printf(out, "sluice queue: unknown command '%s'\n", cmd);
        return 2;
    }
    buf_printf(out, "%s: %s\n", qid, cmd == NULL ? "" : strcmp(cmd, "delete") == 0 ? "deleted" : cmd);
    return 0;
}

int qmgr_ctl(struct qmgr *q, const char *cmd, const char *arg, struct buf *out)
{
    bool json = false;
    char a[CTL_LINE_MAX];
    str_copy(a, arg ? arg : "", sizeof(a));
    /* "json" as the first argument word selects JSON output */
    char *rest = a;
    if (str_iprefix(rest, "json")) {
        json = true;
        rest += 4;
        while (*rest == ' ')
            rest++;
    }
    const char *word = *rest ? rest : NULL;
    if (strcmp(cmd, "list") == 0) {
        ctl_list(q, json, word, out);
        return 0;
    }
    if (strcmp(cmd, "show") == 0) {
        struct qmsg *m = find(q, word, out);
        if (m == NULL)
            return 1;
        if (json) {
            queue_view_json(&m->env, &m->st, out);
            buf_putc(out, '\n');
        } else {
            queue_view_text_header(out);
            queue_view_text(&m->env, &m->st, out);
        }
        return 0;
    }
    if (strcmp(cmd, "flush") == 0) {
        ctl_flush(q, word, out);
        event_active(q->tick, EV_TIMEOUT, 0);
        return 0;
    }
    return ctl_one(q, cmd, word, out);
}

/* ---- the socket ------------------------------------------------------ */

static void ctl_read_cb(struct bufferevent *bev, void *arg)
{
    struct qmgr *q = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len;
    char *line = evbuffer_readln(in, &len, EVBUFFER_EOL_LF);
    if (line == NULL) {
        if (evbuffer_get_length(in) > CTL_LINE_MAX)
            bufferevent_free(bev);
        return;
    }
    char *sp = strchr(line, ' ');
    if (sp)
        *sp++ = '\0';
    struct buf out;
    buf_init(&out, 0);
    int rc = qmgr_ctl(q, line, sp, &out);
    free(line);
    evbuffer_add_printf(bufferevent_get_output(bev), "rc %d\n", rc);
    evbuffer_add(bufferevent_get_output(bev), out.data ? out.data : "", out.len);
    buf_free(&out);
    bufferevent_disable(bev, EV_READ);
}

static void ctl_write_cb(struct bufferevent *bev, void *arg)
{
    if (!(bufferevent_get_enabled(bev) & EV_READ) &&
        evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_free(bev);
}

static void ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
    bufferevent_free(bev);
}

static void ctl_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                       int len, void *arg)
{
    struct bufferevent *bev = bufferevent_socket_new(evconnlistener_get_base(l), fd,
                                                     BEV_OPT_CLOSE_ON_FREE);
    bufferevent_setcb(bev, ctl_read_cb, ctl_write_cb, ctl_event_cb, arg);
    struct timeval tv = {10, 0};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

struct evconnlistener *qmgr_ctl_listen(struct qmgr *q, const char *spool_dir)
{
    struct sockaddr_un un;
    memset(&un, 0, sizeof(un));
    un.sun_family = AF_UNIX;
    snprintf(un.sun_path, sizeof(un.sun_path), "%s/control", spool_dir);
    unlink(un.sun_path);
    mode_t old = umask(0077);
    struct evconnlistener *l = evconnlistener_new_bind(
        q->base, ctl_accept, q, LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 16,
        (struct sockaddr *)&un, sizeof(un));
    umask(old);
    if (l == NULL)
        log_svc_warn("qmgr", "cannot open the control socket %s: %s", un.sun_path,
                     strerror(errno));
    return l;
}

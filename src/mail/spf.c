/*
 * spf.c - the SPF evaluator: check_host() (RFC 7208 4) as a state machine
 * on an asynchronous resolver.
 *
 * An evaluation holds a stack of frames, one per record being read (the
 * checked domain, then one per include:). redirect= replaces the top frame
 * (so the redirect target's exp= is the one used, 6.2). At most one DNS
 * query is in flight per evaluation; its answer resumes the machine in
 * spf_answer(). Errors end the whole evaluation at once: a temperror or
 * permerror inside an include is the result of the top (5.2).
 */
#include "mail/spf.h"
#include "lib/dict.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SPF_MAX_DEPTH (SPF_MAX_LOOKUPS + 2)

enum spf_step {
    ST_TXT,        /* the record of the top frame's domain */
    ST_ADDR,       /* a: A/AAAA of the target */
    ST_MX,         /* mx: the MX set */
    ST_MX_ADDR,    /* mx: A/AAAA of one exchange */
    ST_PTR,        /* ptr (or %{p}): PTR names of the client */
    ST_PTR_ADDR,   /* ptr (or %{p}): A/AAAA of one name */
    ST_EXISTS,     /* exists: A of the target */
    ST_EXP,        /* exp=: the explanation TXT */
};

struct spf_frame {
    char domain[SPF_DOMAIN_MAX + 2];
    struct spf_record rec;
    size_t pos;                 /* term being evaluated */
    bool redirected;            /* reached by redirect= (none -> permerror) */
    bool redirect_counted;      /* its redirect= counted against the limit */
};

struct spf_eval {
    uint64_t id;
    struct spf_ctx *ctx;
    spf_cb cb;
    void *arg;
    struct netaddr ip;
    char sender[600];
    char helo[256];
    char receiver[256];
    struct spf_frame frames[SPF_MAX_DEPTH];
    int depth;                  /* frames in use */
    uint64_t qid;               /* DNS query in flight, 0 = none */
    enum spf_step step;
    bool counted;               /* the current term's lookup is counted */
    bool resolving_p;           /* ptr lookups are for %{p}, not ptr */
    bool at_end;                /* past the last term (redirect= next) */
    char target[SPF_DOMAIN_MAX + 2];
    char **names;               /* mx exchanges or ptr names */
    size_t nnames, iname;
    char validated[SPF_DOMAIN_MAX + 2];
    bool have_p;
    char exp_spec[SPF_EXPAND_MAX];
    struct spf_outcome out;
};

struct spf_ctx {
    struct dns_iface dns;
    struct dict evals;          /* decimal id -> struct spf_eval * */
    uint64_t next_id;
};

static void spf_continue(struct spf_eval *e);
static void spf_end_of_record(struct spf_eval *e);
static void spf_answer(void *arg, const struct dns_result *r);

/* ---------------------------------------------------------------------- */
/* context                                                                 */

struct spf_ctx *spf_ctx_new(const struct dns_iface *dns)
{
    struct spf_ctx *c = xcalloc(1, sizeof(*c));
    c->dns = *dns;
    dict_init(&c->evals, NULL);
    return c;
}

static void spf_key(uint64_t id, char key[24])
{
    str_from_u64(id, key);
}

static void spf_names_clear(struct spf_eval *e)
{
    for (size_t i = 0; i < e->nnames; i++)
        free(e->names[i]);
    free(e->names);
    e->names = NULL;
    e->nnames = e->iname = 0;
}

static void spf_eval_free(struct spf_eval *e)
{
    for (int i = 0; i < e->depth; i++)
        spf_record_free(&e->frames[i].rec);
    spf_names_clear(e);
    free(e);
}

void spf_ctx_free(struct spf_ctx *c)
{
    if (c == NULL)
        return;
    size_t pos = 0;
    const char *key;
    void *val;
    while (dict_next(&c->evals, &pos, &key, &val)) {
        struct spf_eval *e = val;
        if (e->qid)
            c->dns.cancel(c->dns.impl, e->qid);
        spf_eval_free(e);
    }
    dict_free(&c->evals);
    free(c);
}

size_t spf_pending(const struct spf_ctx *c)
{
    return dict_count(&c->evals);
}

void spf_cancel(struct spf_ctx *c, uint64_t id)
{
    char key[24];
    spf_key(id, key);
    struct spf_eval *e = dict_get(&c->evals, key);
    if (e == NULL)
        return;
    if (e->qid)
        c->dns.cancel(c->dns.impl, e->qid);
    dict_del(&c->evals, key);
    spf_eval_free(e);
}

const char *spf_result_str(enum spf_result r)
{
    static const char *const names[] = {"none", "neutral", "pass", "fail",
                                        "softfail", "temperror", "permerror"};
    return names[r];
}

/* ---------------------------------------------------------------------- */
/* plumbing                                                                */

static void spf_query(struct spf_eval *e, const char *name, int type, enum spf_step st)
{
    e->step = st;
    e->qid = e->ctx->dns.query(e->ctx->dns.impl, name, type, spf_answer, e);
}

static struct spf_frame *spf_top(struct spf_eval *e)
{
    return &e->frames[e->depth - 1];
}

static struct spf_term *spf_term_now(struct spf_eval *e)
{
    struct spf_frame *f = spf_top(e);
    return &f->rec.terms[f->pos];
}

/* Hand the outcome to the caller and free the evaluation. */
static void spf_deliver(struct spf_eval *e)
{
    char key[24];
    spf_key(e->id, key);
    dict_del(&e->ctx->evals, key);
    e->cb(e->arg, &e->out);
    spf_eval_free(e);
}

static void spf_macro_ctx(struct spf_eval *e, struct spf_macro_ctx *m)
{
    memset(m, 0, sizeof(*m));
    m->sender = e->sender;
    m->domain = spf_top(e)->domain;
    m->ip = &e->ip;
    m->helo = e->helo;
    m->receiver = e->receiver;
    m->validated = e->have_p ? e->validated : "unknown";
    m->now = (uint64_t)time(NULL);
}

/* The whole evaluation ends with `r` (errors, or the top frame's result). */
static void spf_finish(struct spf_eval *e, enum spf_result r, const char *problem)
{
    e->out.result = r;
    if (problem && !e->out.problem[0])
        str_copy(e->out.problem, problem, sizeof(e->out.problem));
    if (r != SPF_PASS && r != SPF_FAIL && r != SPF_SOFTFAIL && r != SPF_NEUTRAL)
        e->out.match_domain[0] = '\0';
    struct spf_frame *f = e->depth > 0 ? &e->frames[0] : NULL;
    if (r == SPF_FAIL && f && f->rec.exp >= 0) {
        struct spf_macro_ctx m;
        char dom[SPF_EXPAND_MAX];
        spf_macro_ctx(e, &m);
        m.domain = f->domain;
        if (spf_expand(f->rec.terms[f->rec.exp].spec, &m, false, true, dom,
                       sizeof(dom)) == 0 && spf_domain_ok(dom)) {
            str_copy(e->target, dom, sizeof(e->target));
            spf_query(e, dom, DNS_T_TXT, ST_EXP);
            return;
        }
    }
    spf_deliver(e);
}

/* Count one DNS-querying term against the limit of 10. */
static bool spf_count_lookup(struct spf_eval *e)
{
    if (e->counted)
        return true;
    e->counted = true;
    if (++e->out.lookups > SPF_MAX_LOOKUPS) {
        spf_finish(e, SPF_PERMERROR, "more than 10 DNS-querying terms (RFC 7208 4.6.4)");
        return false;
    }
    return true;
}

/* A lookup that found nothing. Returns false when the limit ended it. */
static bool spf_count_void(struct spf_eval *e)
{
    if (++e->out.void_lookups > SPF_MAX_VOID) {
        spf_finish(e, SPF_PERMERROR, "more than 2 void lookups (RFC 7208 4.6.4)");
        return false;
    }
    return true;
}

/* ---------------------------------------------------------------------- */
/* frames                                                                  */

/* Start reading `domain`'s record in a new frame (or in place, redirect). */
static void spf_open_frame(struct spf_eval *e, const char *domain, bool redirect)
{
    struct spf_frame *f;
    if (redirect) {
        f = spf_top(e);
        spf_record_free(&f->rec);
    } else {
        f = &e->frames[e->depth++];
    }
    memset(f, 0, sizeof(*f));
    f->rec.redirect = f->rec.exp = -1;
    f->redirected = redirect;
    e->at_end = false;
    str_copy(f->domain, domain, sizeof(f->domain));
    size_t n = strlen(f->domain);
    if (n > 1 && f->domain[n - 1] == '.')
        f->domain[n - 1] = '\0';
    spf_query(e, f->domain, DNS_T_TXT, ST_TXT);
}

static enum spf_result spf_qual_result(char q)
{
    switch (q) {
    case '-': return SPF_FAIL;
    case '~': return SPF_SOFTFAIL;
    case '?': return SPF_NEUTRAL;
    default: return SPF_PASS;
    }
}

static void spf_frame_result(struct spf_eval *e, enum spf_result r, const char *problem);

/* The current term of the top frame matched. */
static void spf_matched(struct spf_eval *e, const char *match_domain)
{
    struct spf_frame *f = spf_top(e);
    struct spf_term *t = spf_term_now(e);
    if (match_domain == NULL)   /* not an include: this term decided */
        snprintf(e->out.mechanism, sizeof(e->out.mechanism), "%c%s%s%s", t->qual,
                 spf_term_name(t->kind), t->spec ? ":" : "", t->spec ? t->spec : "");
    str_copy(e->out.match_domain, match_domain ? match_domain : f->domain,
             sizeof(e->out.match_domain));
    spf_frame_result(e, spf_qual_result(t->qual), NULL);
}

/* The current term did not match: go on with the next. */
static void spf_next_term(struct spf_eval *e)
{
    spf_top(e)->pos++;
    e->counted = false;
    spf_continue(e);
}

/* The top frame produced `r`: give it to the include that asked, or end. */
static void spf_frame_result(struct spf_eval *e, enum spf_result r, const char *problem)
{
    struct spf_frame *f = spf_top(e);
    if (r == SPF_NONE && f->redirected) {
        r = SPF_PERMERROR;
        problem = "redirect= target has no SPF record";
    }
    if (r == SPF_TEMPERROR || r == SPF_PERMERROR || e->depth == 1) {
        spf_finish(e, r, problem);
        return;
    }
    char match[SPF_DOMAIN_MAX + 1];
    str_copy(match, e->out.match_domain, sizeof(match));
    spf_record_free(&f->rec);
    e->depth--;
    e->counted = true;
    switch (r) {
    case SPF_PASS:
        spf_matched(e, match);
        return;
    case SPF_NONE:
        spf_finish(e, SPF_PERMERROR, "include: target has no SPF record");
        return;
    default:                    /* fail, softfail, neutral: no match */
        e->out.match_domain[0] = '\0';
        e->out.mechanism[0] = '\0';
        spf_next_term(e);
        return;
    }
}

/* ---------------------------------------------------------------------- */
/* answers                                                                 */

static void spf_on_txt(struct spf_eval *e, const struct dns_result *r)
{
    struct spf_frame *f = spf_top(e);
    if (!spf_domain_ok(f->domain) || r->status == DNS_BADNAME ||
        r->status == DNS_NXDOMAIN || r->status == DNS_NODATA) {
        spf_frame_result(e, SPF_NONE, NULL);
        return;
    }
    if (r->status == DNS_TEMPFAIL) {
        spf_frame_result(e, SPF_TEMPERROR, "DNS error reading the SPF record");
        return;
    }
    const char *rec = NULL;
    size_t nrec = 0;
    for (size_t i = 0; i < r->n; i++)
        if (spf_is_record(r->txt[i])) {
            rec = r->txt[i];
            nrec++;
        }
    if (nrec == 0) {
        spf_frame_result(e, SPF_NONE, NULL);
        return;
    }
    if (nrec > 1) {
        spf_frame_result(e, SPF_PERMERROR, "more than one SPF record (RFC 7208 4.5)");
        return;
    }
    char err[160], problem[192];
    if (spf_parse_record(rec, &f->rec, err, sizeof(err)) < 0) {
        snprintf(problem, sizeof(problem), "%s: %s", f->domain, err);
        spf_frame_result(e, SPF_PERMERROR, problem);
        return;
    }
    e->counted = false;
    spf_continue(e);
}

static bool spf_addr_matches(struct spf_eval *e, const struct netaddr *a)
{
    struct spf_term *t = spf_term_now(e);
    struct netmask m;
    m.addr = *a;
    m.prefix = a->family == AF_INET ? t->cidr4 : t->cidr6;
    return netmask_match(&m, &e->ip);
}

static void spf_take_names(struct spf_eval *e, const struct dns_result *r)
{
    spf_names_clear(e);
    size_t n = r->n;
    if (n > SPF_MAX_ADDR_LOOKUPS)
        n = SPF_MAX_ADDR_LOOKUPS;
    e->names = xcalloc(n ? n : 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        const char *h = r->type == DNS_T_MX ? r->mx[i].host : r->names[i];
        if (strcmp(h, ".") != 0)
            e->names[e->nnames++] = xstrdup(h);
    }
}

static int spf_addr_type(const struct spf_eval *e)
{
    return e->ip.family == AF_INET ? DNS_T_A : DNS_T_AAAA;
}

/* Ask for the next exchange or PTR name's addresses; false when none left. */
static bool spf_next_name(struct spf_eval *e, enum spf_step st)
{
    if (e->iname >= e->nnames)
        return false;
    spf_query(e, e->names[e->iname++], spf_addr_type(e), st);
    return true;
}

/* %{p} resolved (or not): take the best validated name, re-run the term. */
static void spf_p_done(struct spf_eval *e)
{
    e->resolving_p = false;
    e->have_p = true;
    if (!e->validated[0])
        str_copy(e->validated, "unknown", sizeof(e->validated));
    if (e->at_end)
        spf_end_of_record(e);
    else
        spf_continue(e);
}

static bool spf_name_within(const char *name, const char *domain)
{
    size_t n = strlen(name), d = strlen(domain);
    if (str_iequal(name, domain))
        return true;
    return n > d && name[n - d - 1] == '.' && str_iequal(name + n - d, domain);
}

static void spf_on_ptr_addr(struct spf_eval *e, const struct dns_result *r)
{
    const char *name = e->names[e->iname - 1];
    bool valid = false;
    for (size_t i = 0; r->status == DNS_OK && i < r->n; i++)
        if (r->addrs[i].family == e->ip.family &&
            memcmp(r->addrs[i].bytes, e->ip.bytes, 16) == 0)
            valid = true;
    if (valid && e->resolving_p) {
        /* prefer a name within the domain, else keep the first (7.3) */
        if (!e->validated[0] || spf_name_within(name, spf_top(e)->domain))
            str_copy(e->validated, name, sizeof(e->validated));
    } else if (valid && spf_name_within(name, e->target)) {
        spf_matched(e, NULL);
        return;
    }
    if (spf_next_name(e, ST_PTR_ADDR))
        return;
    if (e->resolving_p)
        spf_p_done(e);
    else
        spf_next_term(e);
}

static void spf_on_ptr(struct spf_eval *e, const struct dns_result *r)
{
    if (r->status != DNS_OK) {
        /* 5.5: a DNS error or no PTR: the mechanism does not match */
        if (!e->resolving_p && r->status != DNS_TEMPFAIL && !spf_count_void(e))
            return;
        if (e->resolving_p)
            spf_p_done(e);
        else
            spf_next_term(e);
        return;
    }
    spf_take_names(e, r);
    if (spf_next_name(e, ST_PTR_ADDR))
        return;
    if (e->resolving_p)
        spf_p_done(e);
    else
        spf_next_term(e);
}

static void spf_on_mx(struct spf_eval *e, const struct dns_result *r)
{
    if (r->status == DNS_TEMPFAIL) {
        spf_finish(e, SPF_TEMPERROR, "DNS error looking up MX");
        return;
    }
    if (r->status != DNS_OK) {
        if (spf_count_void(e))
            spf_next_term(e);
        return;
    }
    if (r->n > SPF_MAX_ADDR_LOOKUPS) {
        spf_finish(e, SPF_PERMERROR, "mx: more than 10 MX records (RFC 7208 4.6.4)");
        return;
    }
    spf_take_names(e, r);
    if (!spf_next_name(e, ST_MX_ADDR))
        spf_next_term(e);
}

static void spf_on_addr(struct spf_eval *e, const struct dns_result *r, bool mx)
{
    if (r->status == DNS_TEMPFAIL) {
        spf_finish(e, SPF_TEMPERROR, "DNS error looking up an address");
        return;
    }
    if (r->status != DNS_OK && !mx && !spf_count_void(e))
        return;
    for (size_t i = 0; r->status == DNS_OK && i < r->n; i++)
        if (spf_addr_matches(e, &r->addrs[i])) {
            spf_matched(e, NULL);
            return;
        }
    if (mx && spf_next_name(e, ST_MX_ADDR))
        return;
    spf_next_term(e);
}

static void spf_on_exists(struct spf_eval *e, const struct dns_result *r)
{
    if (r->status == DNS_TEMPFAIL) {
        spf_finish(e, SPF_TEMPERROR, "DNS error in exists:");
        return;
    }
    if (r->status == DNS_OK) {
        spf_matched(e, NULL);
        return;
    }
    if (spf_count_void(e))
        spf_next_term(e);
}

static void spf_on_exp(struct spf_eval *e, const struct dns_result *r)
{
    if (r->status == DNS_OK && r->n == 1) {
        struct spf_macro_ctx m;
        spf_macro_ctx(e, &m);
        m.domain = e->frames[0].domain;
        if (spf_expand(r->txt[0], &m, true, false, e->out.explanation,
                       sizeof(e->out.explanation)) < 0)
            e->out.explanation[0] = '\0';
    }
    spf_deliver(e);
}

/* The one DNS query of an evaluation answered. The argument is the
 * evaluation itself: it is safe because an evaluation is only freed with no
 * query in flight, or after cancelling it (spf_cancel, spf_ctx_free). */
static void spf_answer(void *arg, const struct dns_result *r)
{
    struct spf_eval *e = arg;
    e->qid = 0;
    switch (e->step) {
    case ST_TXT: spf_on_txt(e, r); break;
    case ST_ADDR: spf_on_addr(e, r, false); break;
    case ST_MX: spf_on_mx(e, r); break;
    case ST_MX_ADDR: spf_on_addr(e, r, true); break;
    case ST_PTR: spf_on_ptr(e, r); break;
    case ST_PTR_ADDR: spf_on_ptr_addr(e, r); break;
    case ST_EXISTS: spf_on_exists(e, r); break;
    case ST_EXP: spf_on_exp(e, r); break;
    }
}

/* ---------------------------------------------------------------------- */
/* the term loop                                                           */

/* Expand the current term's target domain (its spec, or <domain>).
 * Returns 0, 1 when %{p} must be resolved first (started), -1 on error
 * (finished). */
static int spf_target(struct spf_eval *e, const char *spec)
{
    if (spec == NULL) {
        str_copy(e->target, spf_top(e)->domain, sizeof(e->target));
        return 0;
    }
    if (spf_uses_p(spec) && !e->have_p) {
        e->resolving_p = true;
        e->validated[0] = '\0';
        char name[80];
        dns_reverse_name(&e->ip, name, sizeof(name));
        spf_query(e, name, DNS_T_PTR, ST_PTR);
        return 1;
    }
    struct spf_macro_ctx m;
    spf_macro_ctx(e, &m);
    if (spf_expand(spec, &m, false, true, e->target, sizeof(e->target)) < 0) {
        spf_finish(e, SPF_PERMERROR, "bad macro in a domain-spec");
        return -1;
    }
    return 0;
}

/* Start the DNS work of a mechanism that needs it. */
static void spf_start_dns_term(struct spf_eval *e, struct spf_term *t)
{
    char name[80];
    switch (t->kind) {
    case SPF_M_INCLUDE:
        if (!spf_domain_ok(e->target)) {
            spf_finish(e, SPF_PERMERROR, "include: bad target domain");
            return;
        }
        if (e->depth >= SPF_MAX_DEPTH) {
            spf_finish(e, SPF_PERMERROR, "include: nested too deep");
            return;
        }
        spf_open_frame(e, e->target, false);
        return;
    case SPF_M_A:
        spf_query(e, e->target, spf_addr_type(e), ST_ADDR);
        return;
    case SPF_M_MX:
        spf_query(e, e->target, DNS_T_MX, ST_MX);
        return;
    case SPF_M_PTR:
        dns_reverse_name(&e->ip, name, sizeof(name));
        spf_query(e, name, DNS_T_PTR, ST_PTR);
        return;
    case SPF_M_EXISTS:
        spf_query(e, e->target, DNS_T_A, ST_EXISTS);
        return;
    default:
        return;
    }
}

/* After the last term: redirect=, or the default result neutral (4.7). */
static void spf_end_of_record(struct spf_eval *e)
{
    struct spf_frame *f = spf_top(e);
    if (f->rec.redirect < 0) {
        e->out.match_domain[0] = '\0';
        str_copy(e->out.mechanism, "default", sizeof(e->out.mechanism));
        spf_frame_result(e, SPF_NEUTRAL, NULL);
        return;
    }
    if (!f->redirect_counted) {
        f->redirect_counted = true;
        if (++e->out.lookups > SPF_MAX_LOOKUPS) {
            spf_finish(e, SPF_PERMERROR, "more than 10 DNS-querying terms (RFC 7208 4.6.4)");
            return;
        }
    }
    e->at_end = true;
    int rc = spf_target(e, f->rec.terms[f->rec.redirect].spec);
    if (rc != 0)
        return;
    if (!spf_domain_ok(e->target)) {
        spf_finish(e, SPF_PERMERROR, "redirect= target is not a domain");
        return;
    }
    e->counted = false;
    char target[SPF_DOMAIN_MAX + 2];
    str_copy(target, e->target, sizeof(target));
    spf_open_frame(e, target, true);
}

/* Evaluate terms of the top frame from its position until one needs DNS,
 * one matches, or the record ends. */
static void spf_continue(struct spf_eval *e)
{
    struct spf_frame *f = spf_top(e);
    for (; f->pos < f->rec.n; f->pos++, e->counted = false) {
        struct spf_term *t = &f->rec.terms[f->pos];
        switch (t->kind) {
        case SPF_MOD_REDIRECT:
        case SPF_MOD_EXP:
        case SPF_MOD_UNKNOWN:
            continue;
        case SPF_M_ALL:
            spf_matched(e, NULL);
            return;
        case SPF_M_IP4:
        case SPF_M_IP6:
            if (netmask_match(&t->net, &e->ip)) {
                spf_matched(e, NULL);
                return;
            }
            continue;
        default:
            break;
        }
        if (!spf_count_lookup(e))
            return;
        if (spf_target(e, t->kind == SPF_M_PTR && t->spec == NULL ? NULL : t->spec) != 0)
            return;
        spf_start_dns_term(e, t);
        return;
    }
    spf_end_of_record(e);
}

uint64_t spf_check(struct spf_ctx *c, const struct spf_request *req, spf_cb cb,
                   void *arg)
{
    struct spf_eval *e = xcalloc(1, sizeof(*e));
    e->id = ++c->next_id;
    e->ctx = c;
    e->cb = cb;
    e->arg = arg;
    e->ip = req->ip;
    const char *helo = req->helo ? req->helo : "";
    str_copy(e->helo, helo, sizeof(e->helo));
    str_copy(e->receiver, req->receiver ? req->receiver : "", sizeof(e->receiver));
    if (req->sender && *req->sender && strchr(req->sender, '@'))
        str_copy(e->sender, req->sender, sizeof(e->sender));
    else if (req->sender && *req->sender)
        snprintf(e->sender, sizeof(e->sender), "postmaster@%s", req->sender);
    else
        snprintf(e->sender, sizeof(e->sender), "postmaster@%s", req->domain);
    str_copy(e->out.domain, req->domain, sizeof(e->out.domain));
    char key[24];
    spf_key(e->id, key);
    dict_set(&c->evals, key, e);
    spf_open_frame(e, req->domain, false);
    return e->id;
}

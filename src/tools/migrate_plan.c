/*
 * migrate_plan.c - folder discovery and mapping for `sluice migrate`.
 *
 * Both sides are listed (LIST "" "*", with RETURN (SPECIAL-USE) when the
 * server has LIST-EXTENDED and SPECIAL-USE). A source folder maps, first
 * match wins, to: its --f1f2 target; the destination folder with the same
 * special use (Sent, Trash, Junk, Drafts, Archive); else its own name with
 * the namespace prefix and hierarchy separator translated. --include and
 * --exclude (POSIX extended regexes) filter on the source name.
 */
#include "tools/migrate.h"
#include "lib/strutil.h"
#include "lib/xalloc.h"

#include <stdlib.h>
#include <string.h>

struct listed {
    char *name;
    char sep;
    const char *use;
    bool noselect;
};

struct listing {
    struct listed *v;
    size_t n, cap;
};

static const char *const special_uses[] = {
    "\\Sent", "\\Trash", "\\Junk", "\\Drafts", "\\Archive", "\\All", "\\Flagged",
};

static const char *use_of(const struct imap_resp *r, size_t list)
{
    for (size_t i = list + 1; i < r->tok[list].end; i = r->tok[i].end)
        for (size_t k = 0; k < sizeof(special_uses) / sizeof(special_uses[0]); k++)
            if (imap_tok_is(&r->tok[i], special_uses[k]))
                return special_uses[k];
    return NULL;
}

static bool has_flag(const struct imap_resp *r, size_t list, const char *flag)
{
    for (size_t i = list + 1; i < r->tok[list].end; i = r->tok[i].end)
        if (imap_tok_is(&r->tok[i], flag))
            return true;
    return false;
}

static void list_untagged(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct listing *l = arg;
    if (strcmp(r->keyword, "LIST") != 0 || r->data >= r->ntok ||
        r->tok[r->data].type != IMAP_LIST)
        return;
    size_t flags = r->data, sep = r->tok[flags].end;
    if (sep >= r->ntok || r->tok[sep].end >= r->ntok)
        return;
    const struct imap_tok *name = &r->tok[r->tok[sep].end];
    if (name->type == IMAP_LIST || name->type == IMAP_NIL || name->len > 1000)
        return;
    char buf[1024];
    imap_tok_str(name, buf, sizeof(buf));
    l->v = xgrow(l->v, &l->cap, l->n + 1, sizeof(*l->v));
    struct listed *e = &l->v[l->n++];
    e->name = xstrdup(buf);
    e->sep = r->tok[sep].type == IMAP_STR && r->tok[sep].len == 1 ? r->tok[sep].p[0] : '\0';
    e->use = use_of(r, flags);
    e->noselect = has_flag(r, flags, "\\Noselect") || has_flag(r, flags, "\\NonExistent");
}

static int list_all(struct imapc *c, struct listing *l)
{
    imapc_set_untagged(c, list_untagged, l);
    int st = imapc_has(c, IMAPC_LIST_EXTENDED | IMAPC_SPECIAL_USE)
                 ? imapc_run(c, "LIST \"\" \"*\" RETURN (SPECIAL-USE)")
                 : imapc_run(c, "LIST \"\" \"*\"");
    imapc_set_untagged(c, NULL, NULL);
    return st == IMAP_OK ? 0 : -1;
}

static void listing_free(struct listing *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i].name);
    free(l->v);
}

void mig_plan_translate(const char *name1, const char *prefix1, char sep1,
                        const char *prefix2, char sep2, char *out, size_t outlen)
{
    if (str_iequal(name1, "INBOX")) {
        str_copy(out, "INBOX", outlen);
        return;
    }
    size_t p1 = strlen(prefix1);
    const char *rel = name1;
    if (p1 && strncmp(name1, prefix1, p1) == 0 && name1[p1])
        rel = name1 + p1;
    size_t n = str_copy(out, prefix2, outlen);
    for (const char *p = rel; *p && n + 1 < outlen; p++) {
        char ch = *p;
        if (sep1 && ch == sep1)
            ch = sep2 ? sep2 : '_';
        else if (sep2 && ch == sep2)
            ch = '_';                /* a separator on host2 inside a name */
        out[n++] = ch;
    }
    out[n < outlen ? n : outlen - 1] = '\0';
}

static bool selected_by_filters(const struct mig_opts *o, const char *name)
{
    for (size_t i = 0; i < o->nexclude; i++)
        if (regexec(&o->exclude[i], name, 0, NULL, 0) == 0)
            return false;
    if (o->ninclude == 0)
        return true;
    for (size_t i = 0; i < o->ninclude; i++)
        if (regexec(&o->include[i], name, 0, NULL, 0) == 0)
            return true;
    return false;
}

static const char *target_name(const struct mig_opts *o, const struct listed *src,
                               const struct listing *dst, struct imapc *c1,
                               struct imapc *c2, char *buf, size_t len)
{
    for (size_t i = 0; i < o->nf1f2; i++)
        if (strcmp(o->f1f2[i].from, src->name) == 0)
            return o->f1f2[i].to;
    if (src->use)
        for (size_t i = 0; i < dst->n; i++)
            if (dst->v[i].use && strcmp(dst->v[i].use, src->use) == 0)
                return dst->v[i].name;
    char sep1 = src->sep ? src->sep : imapc_separator(c1);
    mig_plan_translate(src->name, imapc_ns_prefix(c1), sep1, imapc_ns_prefix(c2),
                       imapc_separator(c2), buf, len);
    return buf;
}

static bool dst_has(const struct listing *dst, const char *name)
{
    for (size_t i = 0; i < dst->n; i++)
        if (strcmp(dst->v[i].name, name) == 0 ||
            (str_iequal(name, "INBOX") && str_iequal(dst->v[i].name, "INBOX")))
            return !dst->v[i].noselect;
    return false;
}

static void status_untagged(struct imapc *c, const struct imap_resp *r, void *arg)
{
    struct mig_plan *plan = arg;
    if (strcmp(r->keyword, "STATUS") != 0 || r->data + 1 >= r->ntok)
        return;
    size_t list = r->tok[r->data].end;
    if (list >= r->ntok)
        return;
    long v = imap_fetch_item(r, list, "MESSAGES");
    if (v >= 0 && r->tok[v].type == IMAP_NUM)
        plan->messages += r->tok[v].num;
}

/* Count the source messages with pipelined STATUS commands. */
static void count_messages(struct imapc *c1, struct mig_plan *plan)
{
    imapc_set_untagged(c1, status_untagged, plan);
    for (size_t i = 0; i < plan->n; i++) {
        struct imapc_cmd *b = imapc_cmd_new(c1);
        imapc_cmd_text(b, "STATUS ");
        imapc_cmd_astring(b, plan->v[i].name1);
        imapc_cmd_text(b, " (MESSAGES)");
        imapc_cmd_send(b, NULL, NULL);
    }
    imapc_drain(c1);
    imapc_set_untagged(c1, NULL, NULL);
}

int mig_plan_build(struct imapc *c1, struct imapc *c2, const struct mig_opts *o,
                   struct mig_plan *plan)
{
    struct listing src = {0}, dst = {0};
    int rc = -1;
    if (list_all(c1, &src) < 0 || list_all(c2, &dst) < 0)
        goto out;
    for (size_t i = 0; i < src.n; i++) {
        const struct listed *s = &src.v[i];
        if (s->noselect || !selected_by_filters(o, s->name))
            continue;
        char buf[2048];
        const char *to = target_name(o, s, &dst, c1, c2, buf, sizeof(buf));
        plan->v = xgrow(plan->v, &plan->cap, plan->n + 1, sizeof(*plan->v));
        struct mig_folder *f = &plan->v[plan->n++];
        f->name1 = xstrdup(s->name);
        f->name2 = xstrdup(to);
        f->exists2 = dst_has(&dst, to);
        f->use = s->use;
        f->noselect1 = false;
    }
    count_messages(c1, plan);
    rc = imapc_failed(c1) ? -1 : 0;
out:
    listing_free(&src);
    listing_free(&dst);
    return rc;
}

void mig_plan_free(struct mig_plan *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        free(plan->v[i].name1);
        free(plan->v[i].name2);
    }
    free(plan->v);
    memset(plan, 0, sizeof(*plan));
}

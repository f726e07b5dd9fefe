/*
 * delivery.h - the contract between the queue manager and the delivery
 * agents (Maildir, error, SMTP, LMTP).
 *
 * The queue manager fills a struct delivery_job (one message, one next
 * hop, one or more recipients) and calls delivery_start(). The agent sets
 * a reply for every recipient and calls job->done(job) exactly once, on the
 * event loop, never from inside delivery_start() itself. The job belongs
 * to the queue manager; the agent must not touch it after done().
 */
#ifndef SLUICE_DELIVERY_H
#define SLUICE_DELIVERY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/time.h>

struct spool;

struct config;
struct dns;
struct event_base;
struct workq;

enum transport_kind { TR_SMTP, TR_LMTP, TR_MAILDIR, TR_ERROR };

struct nexthop {
    enum transport_kind kind;
    char host[256];        /* SMTP/LMTP host, or the LMTP unix socket path */
    uint16_t port;
    bool use_mx;           /* SMTP: look up the MX of host */
    bool unix_socket;      /* LMTP over a unix socket */
    char error_text[256];  /* TR_ERROR: "5.1.1 text" */
};

struct delivery_rcpt {
    char *addr;
    unsigned notify;
    char *orcpt;
    size_t index;          /* recipient index in the message */
    /* result, set by the agent */
    int code;              /* SMTP-style code: 250, 451, 550, ... */
    char enhanced[16];     /* "2.0.0" */
    char text[512];        /* the reply or our reason */
};

struct delivery_job {
    uint64_t id;
    char qid[17];
    struct spool *spool;   /* where the message is read (spool_content_open) */
    uint64_t content_offset, content_length;
    char *sender;
    bool smtputf8;
    int body;
    char *envid;
    int ret;
    struct nexthop hop;
    char dest_key[300];
    struct delivery_rcpt *rcpts;
    size_t nrcpt;
    /* filled by the agent for the log */
    char relay[300];       /* "host[ip]:port", "local", "none" */
    char tls[64];          /* "may:TLSv1.3", "may:none", "" */
    char remote_host[256]; /* for the classifier and bounces */
    struct timeval t_queued, t_start, t_connected, t_end;
    bool connect_failed;   /* no connection to any host: destination-level */
    void (*done)(struct delivery_job *job);
};

/* Services the agents share; set once by the queue manager. */
struct delivery_env {
    struct event_base *base;
    struct workq *workq;
    struct dns *dns;
    const struct config *(*config)(void);
    /* Connection reuse: the next waiting job for a destination, or NULL.
     * The caller runs it on its open connection. */
    struct delivery_job *(*next_job)(const char *dest_key);
};

void delivery_init(const struct delivery_env *env);
void delivery_start(struct delivery_job *job);
/* Set one recipient's result. */
void delivery_set_result(struct delivery_rcpt *r, int code, const char *enhanced,
                         const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* Set every recipient still without a result. */
void delivery_set_all(struct delivery_job *job, int code, const char *enhanced,
                      const char *text);

/* Agents (delivery_start dispatches on hop.kind). */
void local_deliver_maildir(struct delivery_job *job);
void local_deliver_error(struct delivery_job *job);
void smtp_deliver(struct delivery_job *job);
/* Interrupt every SMTP/LMTP delivery in flight (each job's done() runs). */
void smtp_client_shutdown(void);

extern struct delivery_env delivery_env;

#endif

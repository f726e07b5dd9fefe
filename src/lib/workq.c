/*
 * workq.c - worker threads for blocking work, completions on the loop
 * (woken through a pipe, like the spool's sync thread).
 */
#include "lib/workq.h"
#include "lib/xalloc.h"

#include <event2/event.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

struct wq_job {
    struct wq_job *next;
    void (*work)(void *);
    void (*done)(void *);
    void *arg;
};

struct workq {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct wq_job *todo, *todo_tail, *done, *done_tail;
    pthread_t *threads;
    unsigned nthreads;
    bool stopping;
    size_t pending;
    int pipefd[2];
    struct event *ev;
};

static void *wq_main(void *arg)
{
    struct workq *q = arg;
    pthread_mutex_lock(&q->lock);
    for (;;) {
        while (q->todo == NULL && !q->stopping)
            pthread_cond_wait(&q->cond, &q->lock);
        if (q->todo == NULL)
            break;
        struct wq_job *j = q->todo;
        q->todo = j->next;
        if (q->todo == NULL)
            q->todo_tail = NULL;
        pthread_mutex_unlock(&q->lock);
        j->work(j->arg);
        pthread_mutex_lock(&q->lock);
        j->next = NULL;
        if (q->done_tail)
            q->done_tail->next = j;
        else
            q->done = j;
        q->done_tail = j;
        char c = 1;
        if (write(q->pipefd[1], &c, 1) < 0) {
            /* pipe full: a wake-up is already pending */
        }
    }
    pthread_mutex_unlock(&q->lock);
    return NULL;
}

static void wq_wake(evutil_socket_t fd, short what, void *arg)
{
    struct workq *q = arg;
    char buf[256];
    if (fd >= 0)
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
    pthread_mutex_lock(&q->lock);
    struct wq_job *list = q->done;
    q->done = q->done_tail = NULL;
    pthread_mutex_unlock(&q->lock);
    while (list) {
        struct wq_job *j = list;
        list = j->next;
        q->pending--;
        j->done(j->arg);
        free(j);
    }
}

struct workq *workq_new(struct event_base *base, unsigned nthreads)
{
    struct workq *q = xcalloc(1, sizeof(*q));
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->cond, NULL);
    if (pipe2(q->pipefd, O_CLOEXEC | O_NONBLOCK) < 0) {
        free(q);
        return NULL;
    }
    q->ev = event_new(base, q->pipefd[0], EV_READ | EV_PERSIST, wq_wake, q);
    event_add(q->ev, NULL);
    q->nthreads = nthreads ? nthreads : 1;
    q->threads = xcalloc(q->nthreads, sizeof(*q->threads));
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_create(&q->threads[i], NULL, wq_main, q);
    return q;
}

void workq_submit(struct workq *q, void (*work)(void *), void (*done)(void *), void *arg)
{
    struct wq_job *j = xcalloc(1, sizeof(*j));
    j->work = work;
    j->done = done;
    j->arg = arg;
    q->pending++;
    pthread_mutex_lock(&q->lock);
    if (q->todo_tail)
        q->todo_tail->next = j;
    else
        q->todo = j;
    q->todo_tail = j;
    pthread_cond_signal(&q->cond);
    pthread_mutex_unlock(&q->lock);
}

size_t workq_pending(const struct workq *q)
{
    return q->pending;
}

void workq_free(struct workq *q)
{
    if (q == NULL)
        return;
    pthread_mutex_lock(&q->lock);
    q->stopping = true;
    pthread_cond_broadcast(&q->cond);
    pthread_mutex_unlock(&q->lock);
    for (unsigned i = 0; i < q->nthreads; i++)
        pthread_join(q->threads[i], NULL);
    wq_wake(-1, 0, q);
    event_free(q->ev);
    close(q->pipefd[0]);
    close(q->pipefd[1]);
    free(q->threads);
    free(q);
}

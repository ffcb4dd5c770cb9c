/*
 * echo_plugin.c: the reference MeltyBase plugin written in plain C (C11).
 *
 * Read this file next to Sources/MeltyPluginABI/include/meltybase_plugin.h. It shows
 * everything a C plugin has to get right:
 *
 *   - exporting exactly one symbol, `meltybase_plugin_entry`, that returns an immortal
 *     descriptor (everything else is `static` and the library is built with
 *     -fvisibility=hidden);
 *   - checking the host table (struct_size, abi_major) before using it;
 *   - copying host-owned memory before the call that handed it over returns;
 *   - completing every request exactly once with host->respond, either synchronously
 *     inside handle_request or later from another thread;
 *   - running background work on a small fixed pool of worker threads that is joined in
 *     the descriptor's `shutdown` callback;
 *   - escaping untrusted text before putting it into JSON.
 *
 * Build (see scripts/build-c-plugins.sh):
 *   cc -std=c11 -O2 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Werror -pthread \
 *      -I Sources/MeltyPluginABI/include -o libecho_c.so echo_plugin.c
 *
 * Routes, below /p/<portal>/echo-c (request->path is the part after the prefix):
 *   GET|POST /echo                 200 text/plain, the request body, or "echo" when empty
 *   GET      /async?delay_ms=N     200 JSON {"async":true,"portal":"<portal>"} sent from a
 *                                  worker thread after N ms (default 1, capped at 1000;
 *                                  a malformed N is answered 400)
 *   GET      /whoami               200 JSON with portal, request_id, remote, client_cert
 *   GET      /count                bumps counter meltybase_plugin_echo_count_total, logs,
 *                                  200 text/plain "counted"
 *   GET      /lookup-echo-service   looks up the JSON service echo.v1 (exported by the Swift
 *                                  example) for this portal: 200 {"found":true} or 200
 *                                  {"found":false,"status":N,"message":"..."} (the host
 *                                  refuses when echo-swift is not enabled for the portal)
 *   anything else                  404 JSON {"code":"not_found",...}
 * WebSockets: every upgrade is accepted and every frame is echoed back unchanged.
 *
 * ABI 1.5 (see docs/plugin-pages-and-commands.md):
 *   Studio page "hello" (studio/hello.js; scripts/build-c-plugins.sh copies the folder to
 *                                  echo_c_studio/ beside libecho_c.so), shown at
 *                                  /dashboard/plugins/echo-c/hello
 *   Command  meltybase echo-c hello [--name NAME]   prints "Hello, NAME! (echo-c 1.x)"
 *   Health   always {"status":"ok"}
 */

/* clock_gettime, pthread_condattr_setclock and friends are POSIX, not C11. */
#define _POSIX_C_SOURCE 200809L

#include "meltybase_plugin.h"

#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------------------------------ */
/* Plugin identity                                                                       */
/* ------------------------------------------------------------------------------------ */

#define ECHO_NAME "echo-c"
#define ECHO_VERSION "1.0.0"
#define ECHO_ROUTE_PREFIX "echo-c"

/* /async tuning. The pool is fixed-size: waiting is done with a deadline-ordered queue and
 * a timed condition wait, so two workers serve any number of concurrent delayed requests.
 * The queue is bounded so a flood of /async requests cannot exhaust memory. */
#define ECHO_WORKER_COUNT 2
#define ECHO_MAX_PENDING_JOBS 4096
#define ECHO_ASYNC_DEFAULT_DELAY_MS 1u
#define ECHO_ASYNC_MAX_DELAY_MS 1000u

/* MB_HAS_FIELD (from meltybase_plugin.h) asks whether a versioned struct, as the other side
 * compiled it, already has a field: see REQUEST_FIELD and echo_init. */

/* ------------------------------------------------------------------------------------ */
/* Global plugin state                                                                   */
/* ------------------------------------------------------------------------------------ */

/* Set once by `init` (sequentially, on one kernel thread), before the host creates any instance or routes
 * any request; the host's own synchronisation when it later dispatches work to other
 * threads publishes these values, so they are read without a lock afterwards. */
static const mb_host_api *g_host;
static const mb_host_plugin *g_plugin;

/* "c;ptr64" on a 64-bit target. Filled exactly once (pthread_once) by the entry function,
 * before the descriptor pointing at it is handed to the kernel. */
static char g_build_signature[32];
static pthread_once_t g_build_signature_once = PTHREAD_ONCE_INIT;

/* One instance per portal. The header declares `struct mb_plugin_instance` opaque; the
 * plugin defines it. */
struct mb_plugin_instance {
    /* Valid until instance_destroy returns. Never used after a request was completed:
     * the host may destroy the instance as soon as its last request is answered. */
    const mb_host_portal *portal;
    /* Our own NUL-terminated copy of the portal name (the context's bytes are host-owned). */
    char *portal_name;
    size_t portal_name_len;
};

/* ------------------------------------------------------------------------------------ */
/* Small helpers                                                                         */
/* ------------------------------------------------------------------------------------ */

/* Writes a message into a host error buffer. snprintf always NUL-terminates and truncates
 * to the capacity, which is exactly what the ABI asks for. */
__attribute__((format(printf, 2, 3)))
static void set_error(mb_host_error_buffer error, const char *format, ...) {
    if (error.data == NULL || error.capacity == 0) {
        return;
    }
    va_list args;
    va_start(args, format);
    vsnprintf(error.data, error.capacity, format, args);
    va_end(args);
}

static bool bytes_equal(mb_host_bytes bytes, const char *literal) {
    size_t len = strlen(literal);
    return bytes.len == len && (len == 0 || memcmp(bytes.data, literal, len) == 0);
}

static mb_plugin_bytes plugin_cstr(const char *text) {
    return (mb_plugin_bytes){ .data = (const uint8_t *)text, .len = strlen(text) };
}

static void log_message(const mb_host_portal *portal, mb_log_level level, const char *text) {
    if (g_host != NULL) {
        g_host->log(g_plugin, portal, level, text, strlen(text));
    }
}

/* Completes a request with one content-type header. The host copies headers and body
 * before respond returns, so stack and temporary buffers are fine here. */
static void respond(const mb_host_portal *portal, mb_request_token token, uint16_t status,
                    const char *content_type, const void *body, size_t body_len) {
    mb_plugin_header header = {
        .name = plugin_cstr("content-type"),
        .value = plugin_cstr(content_type),
    };
    mb_plugin_bytes payload = { .data = body_len > 0 ? body : NULL, .len = body_len };
    mb_status status_code = g_host->respond(token, status, &header, 1, payload);
    if (status_code != MB_OK) {
        /* MB_ERR_NOT_FOUND: the host already gave up on the request (timeout, client
         * gone). Nothing to do but note it. */
        log_message(portal, MB_LOG_DEBUG, "echo-c: host->respond refused the token");
    }
}

/* Answer used when we cannot even build a response (out of memory). */
static void respond_internal_error(const mb_host_portal *portal, mb_request_token token) {
    static const char body[] =
        "{\"code\":\"internal\",\"message\":\"echo-c ran out of memory\"}";
    respond(portal, token, 500, "application/json", body, sizeof(body) - 1);
}

/* ------------------------------------------------------------------------------------ */
/* A growable byte buffer with JSON string escaping                                      */
/* ------------------------------------------------------------------------------------ */

typedef struct echo_buffer {
    char *data;
    size_t len;
    size_t capacity;
    bool failed; /* an allocation failed; the content is incomplete */
} echo_buffer;

static void buffer_append(echo_buffer *buffer, const void *bytes, size_t len) {
    if (buffer->failed || len == 0) {
        return;
    }
    if (len > SIZE_MAX - buffer->len) {
        buffer->failed = true;
        return;
    }
    size_t needed = buffer->len + len;
    if (needed > buffer->capacity) {
        size_t capacity = buffer->capacity > 0 ? buffer->capacity : 64;
        while (capacity < needed) {
            capacity = capacity > SIZE_MAX / 2 ? needed : capacity * 2;
        }
        char *grown = realloc(buffer->data, capacity);
        if (grown == NULL) {
            buffer->failed = true;
            return;
        }
        buffer->data = grown;
        buffer->capacity = capacity;
    }
    memcpy(buffer->data + buffer->len, bytes, len);
    buffer->len = needed;
}

static void buffer_append_cstr(echo_buffer *buffer, const char *text) {
    buffer_append(buffer, text, strlen(text));
}

static void buffer_free(echo_buffer *buffer) {
    free(buffer->data);
    *buffer = (echo_buffer){ 0 };
}

/* Length of the well-formed UTF-8 sequence at `s` (at most `n` bytes), or 0 when the bytes
 * there are not well-formed UTF-8 (overlong forms, surrogates, > U+10FFFF, truncation). */
static size_t utf8_sequence_length(const uint8_t *s, size_t n) {
    uint8_t b0 = s[0];
    if (b0 < 0x80) {
        return 1;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        if (b0 == 0xE0) lo = 0xA0;      /* no overlongs */
        else if (b0 == 0xED) hi = 0x9F; /* no UTF-16 surrogates */
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        if (b0 == 0xF0) lo = 0x90;      /* no overlongs */
        else if (b0 == 0xF4) hi = 0x8F; /* nothing above U+10FFFF */
    } else {
        return 0;
    }
    if (n < len || s[1] < lo || s[1] > hi) {
        return 0;
    }
    for (size_t i = 2; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF) {
            return 0;
        }
    }
    return len;
}

/* Appends `text` escaped for use inside a JSON string (without the surrounding quotes).
 * Host strings are supposed to be UTF-8, but paths and headers come from the network:
 * invalid bytes become U+FFFD so the output is always valid JSON. */
static void buffer_append_json_escaped(echo_buffer *buffer, const uint8_t *text, size_t len) {
    size_t i = 0;
    while (i < len) {
        uint8_t c = text[i];
        if (c >= 0x80) {
            size_t seq = utf8_sequence_length(text + i, len - i);
            if (seq == 0) {
                buffer_append_cstr(buffer, "\\ufffd");
                i += 1;
            } else {
                buffer_append(buffer, text + i, seq);
                i += seq;
            }
            continue;
        }
        switch (c) {
        case '"': buffer_append_cstr(buffer, "\\\""); break;
        case '\\': buffer_append_cstr(buffer, "\\\\"); break;
        case '\b': buffer_append_cstr(buffer, "\\b"); break;
        case '\f': buffer_append_cstr(buffer, "\\f"); break;
        case '\n': buffer_append_cstr(buffer, "\\n"); break;
        case '\r': buffer_append_cstr(buffer, "\\r"); break;
        case '\t': buffer_append_cstr(buffer, "\\t"); break;
        default:
            if (c < 0x20 || c == 0x7F) {
                char escaped[8];
                snprintf(escaped, sizeof(escaped), "\\u%04x", (unsigned)c);
                buffer_append_cstr(buffer, escaped);
            } else {
                buffer_append(buffer, &c, 1);
            }
            break;
        }
        i += 1;
    }
}

/* Appends `"key":"<escaped value>"`. */
static void buffer_append_json_field(echo_buffer *buffer, const char *key, const uint8_t *value,
                                     size_t value_len) {
    buffer_append_cstr(buffer, "\"");
    buffer_append_cstr(buffer, key);
    buffer_append_cstr(buffer, "\":\"");
    buffer_append_json_escaped(buffer, value, value_len);
    buffer_append_cstr(buffer, "\"");
}

/* ------------------------------------------------------------------------------------ */
/* Worker pool for /async                                                                */
/* ------------------------------------------------------------------------------------ */

/* One delayed response. Everything the worker needs is copied in here while
 * handle_request runs: the request itself is host memory that dies when it returns, and
 * the instance may be destroyed as soon as the response is sent. */
typedef struct echo_job {
    struct echo_job *next;
    mb_request_token token;
    struct timespec deadline; /* CLOCK_MONOTONIC */
    char *body;               /* prebuilt response body, owned by the job */
    size_t body_len;
} echo_job;

static struct {
    pthread_mutex_t mutex;
    pthread_cond_t wakeup;     /* signalled on enqueue and on stop; uses CLOCK_MONOTONIC */
    echo_job *head;            /* sorted by deadline, earliest first */
    echo_job *tail;            /* last job: O(1) append in the common equal-delay case */
    size_t pending;
    bool running;              /* workers started and not yet told to stop */
    bool stopping;
    bool wakeup_ready;         /* `wakeup` was initialised (pool_start got that far) */
    pthread_t threads[ECHO_WORKER_COUNT];
    size_t thread_count;
} g_pool = { .mutex = PTHREAD_MUTEX_INITIALIZER };

static bool timespec_before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

static struct timespec deadline_after_ms(unsigned delay_ms) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    now.tv_sec += (time_t)(delay_ms / 1000u);
    now.tv_nsec += (long)(delay_ms % 1000u) * 1000000L;
    if (now.tv_nsec >= 1000000000L) {
        now.tv_sec += 1;
        now.tv_nsec -= 1000000000L;
    }
    return now;
}

static void job_free(echo_job *job) {
    free(job->body);
    free(job);
}

/* Runs on a worker thread: this is "host->respond from another thread". */
static void job_complete(echo_job *job, bool shutting_down) {
    if (shutting_down) {
        /* Unreachable if the host keeps its promise (instances, and so their requests,
         * are gone before shutdown), but a request must never be left dangling. */
        static const char body[] =
            "{\"code\":\"unavailable\",\"message\":\"echo-c is shutting down\"}";
        respond(NULL, job->token, 503, "application/json", body, sizeof(body) - 1);
    } else {
        respond(NULL, job->token, 200, "application/json", job->body, job->body_len);
    }
}

static void *worker_main(void *unused) {
    (void)unused;
    pthread_mutex_lock(&g_pool.mutex);
    for (;;) {
        echo_job *job = g_pool.head;
        if (job == NULL) {
            if (g_pool.stopping) {
                break;
            }
            pthread_cond_wait(&g_pool.wakeup, &g_pool.mutex);
            continue;
        }
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        bool due = !timespec_before(&now, &job->deadline);
        if (!due && !g_pool.stopping) {
            /* Sleep until the earliest deadline, or until a new earlier job or a stop
             * request wakes us; then look at the queue again. The deadline is copied:
             * while we wait (mutex released) another worker may pop and free this job,
             * and pthread_cond_timedwait may read its timeout again after waking. */
            struct timespec deadline = job->deadline;
            pthread_cond_timedwait(&g_pool.wakeup, &g_pool.mutex, &deadline);
            continue;
        }
        /* On shutdown, jobs that are not due yet are answered at once instead of delaying
         * the process exit. */
        bool shutting_down = !due;
        g_pool.head = job->next;
        if (g_pool.head == NULL) {
            g_pool.tail = NULL;
        }
        g_pool.pending -= 1;
        /* Never call into the host while holding our own lock. */
        pthread_mutex_unlock(&g_pool.mutex);
        job_complete(job, shutting_down);
        job_free(job);
        pthread_mutex_lock(&g_pool.mutex);
    }
    pthread_mutex_unlock(&g_pool.mutex);
    return NULL;
}

/* Joins the workers that were started and clears the pool. Main thread only. Safe to call
 * when the pool never started (e.g. shutdown after a failed init). */
static void pool_stop(void) {
    pthread_mutex_lock(&g_pool.mutex);
    g_pool.running = false;
    g_pool.stopping = true;
    if (g_pool.wakeup_ready) {
        pthread_cond_broadcast(&g_pool.wakeup);
    }
    pthread_mutex_unlock(&g_pool.mutex);

    for (size_t i = 0; i < g_pool.thread_count; i++) {
        pthread_join(g_pool.threads[i], NULL);
    }

    /* Workers drain the queue before exiting, so this only matters if none ever started.
     * job_complete reads g_host, which is set whenever a job could have been queued. */
    pthread_mutex_lock(&g_pool.mutex);
    echo_job *job = g_pool.head;
    g_pool.head = NULL;
    g_pool.tail = NULL;
    g_pool.pending = 0;
    pthread_mutex_unlock(&g_pool.mutex);
    while (job != NULL) {
        echo_job *next = job->next;
        job_complete(job, true);
        job_free(job);
        job = next;
    }

    if (g_pool.wakeup_ready) {
        pthread_cond_destroy(&g_pool.wakeup);
        g_pool.wakeup_ready = false;
    }
    g_pool.thread_count = 0;
    g_pool.stopping = false;
}

/* Starts the workers. Main thread only (called from init). */
static mb_status pool_start(mb_host_error_buffer error) {
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc == 0) {
        rc = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
        if (rc == 0) {
            rc = pthread_cond_init(&g_pool.wakeup, &attr);
        }
        pthread_condattr_destroy(&attr);
    }
    if (rc != 0) {
        set_error(error, "echo-c: cannot create the worker condition variable (%s)", strerror(rc));
        return MB_ERR_INTERNAL;
    }
    g_pool.wakeup_ready = true;

    /* Workers must not receive process signals (SIGINT, SIGTERM, ...): those belong to the
     * kernel. Threads inherit the creator's mask, so block everything around creation. */
    sigset_t all_signals, previous;
    sigfillset(&all_signals);
    pthread_sigmask(SIG_SETMASK, &all_signals, &previous);

    g_pool.stopping = false;
    g_pool.thread_count = 0;
    for (size_t i = 0; i < ECHO_WORKER_COUNT; i++) {
        rc = pthread_create(&g_pool.threads[i], NULL, worker_main, NULL);
        if (rc != 0) {
            break;
        }
        g_pool.thread_count += 1;
    }
    pthread_sigmask(SIG_SETMASK, &previous, NULL);

    if (rc != 0) {
        pool_stop(); /* joins the workers that did start, destroys the condvar */
        set_error(error, "echo-c: cannot start worker thread (%s)", strerror(rc));
        return MB_ERR_INTERNAL;
    }
    pthread_mutex_lock(&g_pool.mutex);
    g_pool.running = true;
    pthread_mutex_unlock(&g_pool.mutex);
    return MB_OK;
}

/* Hands a job to the workers. Takes ownership of `job` only when it returns true. */
static bool pool_enqueue(echo_job *job) {
    pthread_mutex_lock(&g_pool.mutex);
    if (!g_pool.running || g_pool.pending >= ECHO_MAX_PENDING_JOBS) {
        pthread_mutex_unlock(&g_pool.mutex);
        return false;
    }
    /* Insert sorted by deadline; equal deadlines keep arrival order. Most jobs are due no
     * earlier than the last one queued, so try the tail first. */
    job->next = NULL;
    if (g_pool.tail == NULL) {
        g_pool.head = job;
        g_pool.tail = job;
    } else if (!timespec_before(&job->deadline, &g_pool.tail->deadline)) {
        g_pool.tail->next = job;
        g_pool.tail = job;
    } else {
        echo_job **link = &g_pool.head;
        while (!timespec_before(&job->deadline, &(*link)->deadline)) {
            link = &(*link)->next; /* terminates: job is due before the tail */
        }
        job->next = *link;
        *link = job;
    }
    g_pool.pending += 1;
    pthread_cond_signal(&g_pool.wakeup);
    pthread_mutex_unlock(&g_pool.mutex);
    return true;
}

/* ------------------------------------------------------------------------------------ */
/* Routes                                                                                */
/* ------------------------------------------------------------------------------------ */

/* GET|POST /echo: answered synchronously, inside handle_request. */
static void route_echo(mb_plugin_instance *instance, mb_request_token token,
                       const mb_host_request *request) {
    if (request->body.len > 0) {
        /* Passing host bytes straight back is fine: they are valid for the whole call and
         * the host copies the body before respond returns. */
        respond(instance->portal, token, 200, "text/plain", request->body.data, request->body.len);
    } else {
        respond(instance->portal, token, 200, "text/plain", "echo", 4);
    }
}

/* Parses delay_ms from a raw query string. Returns false when the parameter is present
 * but not a plain decimal number. */
static bool parse_delay_ms(mb_host_bytes query, unsigned *delay_ms_out) {
    static const char key[] = "delay_ms=";
    const size_t key_len = sizeof(key) - 1;
    *delay_ms_out = ECHO_ASYNC_DEFAULT_DELAY_MS;

    size_t start = 0;
    while (start < query.len) {
        size_t end = start;
        while (end < query.len && query.data[end] != '&') {
            end++;
        }
        size_t pair_len = end - start;
        if (pair_len >= key_len && memcmp(query.data + start, key, key_len) == 0) {
            const uint8_t *digits = query.data + start + key_len;
            size_t digit_count = pair_len - key_len;
            if (digit_count == 0) {
                return false;
            }
            unsigned value = 0;
            for (size_t i = 0; i < digit_count; i++) {
                if (digits[i] < '0' || digits[i] > '9') {
                    return false;
                }
                if (value <= ECHO_ASYNC_MAX_DELAY_MS) { /* stop growing once over the cap */
                    value = value * 10u + (unsigned)(digits[i] - '0');
                }
            }
            *delay_ms_out = value > ECHO_ASYNC_MAX_DELAY_MS ? ECHO_ASYNC_MAX_DELAY_MS : value;
            return true; /* first occurrence wins */
        }
        start = end + 1;
    }
    return true;
}

/* GET /async: answered later, from a worker thread. */
static void route_async(mb_plugin_instance *instance, mb_request_token token,
                        const mb_host_request *request) {
    unsigned delay_ms;
    if (!parse_delay_ms(request->query, &delay_ms)) {
        static const char body[] =
            "{\"code\":\"bad_request\",\"message\":\"delay_ms must be a decimal number of "
            "milliseconds\",\"hint\":\"try GET /async?delay_ms=50\"}";
        respond(instance->portal, token, 400, "application/json", body, sizeof(body) - 1);
        return;
    }

    /* Build the whole body now: the worker must touch neither the request (host memory,
     * gone when we return) nor the instance (may be destroyed once we have responded). */
    echo_buffer body = { 0 };
    buffer_append_cstr(&body, "{\"async\":true,");
    buffer_append_json_field(&body, "portal", (const uint8_t *)instance->portal_name,
                             instance->portal_name_len);
    buffer_append_cstr(&body, "}");
    echo_job *job = body.failed ? NULL : calloc(1, sizeof(*job));
    if (job == NULL) {
        buffer_free(&body);
        respond_internal_error(instance->portal, token);
        return;
    }
    job->token = token;
    job->deadline = deadline_after_ms(delay_ms);
    job->body = body.data;
    job->body_len = body.len;

    if (!pool_enqueue(job)) {
        job_free(job);
        static const char busy[] =
            "{\"code\":\"unavailable\",\"message\":\"echo-c has too many pending async "
            "requests\",\"hint\":\"retry later\"}";
        respond(instance->portal, token, 503, "application/json", busy, sizeof(busy) - 1);
    }
    /* The job (and the duty to respond) now belongs to the worker pool. */
}

/* Returns a request field, or an empty view when the host's request struct is too old to
 * have it (a pattern worth copying for fields added in later minor versions). */
#define REQUEST_FIELD(request, field)                            \
    (MB_HAS_FIELD((request), mb_host_request, field) ? (request)->field \
                                                     : (mb_host_bytes){ NULL, 0 })

/* Answers with a JSON body built in `body` (500 if building it ran out of memory) and
 * frees the buffer: the host has copied the bytes by the time respond returns. */
static void respond_json_buffer(mb_plugin_instance *instance, mb_request_token token, uint16_t status,
                                echo_buffer *body) {
    if (body->failed) {
        respond_internal_error(instance->portal, token);
    } else {
        respond(instance->portal, token, status, "application/json", body->data, body->len);
    }
    buffer_free(body);
}

/* GET /whoami: reflects request metadata as JSON. */
static void route_whoami(mb_plugin_instance *instance, mb_request_token token,
                         const mb_host_request *request) {
    mb_host_bytes portal = REQUEST_FIELD(request, portal_name);
    mb_host_bytes request_id = REQUEST_FIELD(request, request_id);
    mb_host_bytes remote = REQUEST_FIELD(request, remote_address);
    mb_host_bytes cert = REQUEST_FIELD(request, client_certificate_subject);

    echo_buffer body = { 0 };
    buffer_append_cstr(&body, "{");
    buffer_append_json_field(&body, "portal", portal.data, portal.len);
    buffer_append_cstr(&body, ",");
    buffer_append_json_field(&body, "request_id", request_id.data, request_id.len);
    buffer_append_cstr(&body, ",");
    buffer_append_json_field(&body, "remote", remote.data, remote.len);
    buffer_append_cstr(&body, ",");
    buffer_append_json_field(&body, "client_cert", cert.data, cert.len);
    buffer_append_cstr(&body, "}");
    respond_json_buffer(instance, token, 200, &body);
}

/* GET /count: shows the counter and log host functions. */
static void route_count(mb_plugin_instance *instance, mb_request_token token) {
    static const char counter[] = "echo_count"; /* -> meltybase_plugin_echo_count_total */
    g_host->counter_add(g_plugin, instance->portal, counter, sizeof(counter) - 1, 1);
    log_message(instance->portal, MB_LOG_INFO, "echo-c: counted one request");
    respond(instance->portal, token, 200, "text/plain", "counted", 7);
}

/* GET /lookup-echo-service: shows the service registry and its per-portal refusal. */
static void route_lookup(mb_plugin_instance *instance, mb_request_token token) {
    static const char name[] = "echo";
    char message[256] = { 0 };
    mb_host_error_buffer error = { message, sizeof(message) };
    mb_service_binding binding = { 0 };
    mb_status status = g_host->service_lookup(instance->portal, name, sizeof(name) - 1, 1, &binding, error);
    echo_buffer body = { 0 };
    if (status == MB_OK) {
        buffer_append_cstr(&body, "{\"found\":true}");
    } else {
        char prefix[64];
        snprintf(prefix, sizeof(prefix), "{\"found\":false,\"status\":%d,", (int)status);
        buffer_append_cstr(&body, prefix);
        buffer_append_json_field(&body, "message", (const uint8_t *)message, strlen(message));
        buffer_append_cstr(&body, "}");
    }
    respond_json_buffer(instance, token, 200, &body);
}

/* What an audit_async completion needs to answer its request. */
typedef struct echo_audit_call {
    const mb_host_portal *portal;
    mb_request_token token;
} echo_audit_call;

/* Runs once on a host thread when the audit entry is committed (or could not be). */
static void audit_done(void *context, mb_status status, mb_host_bytes message) {
    echo_audit_call *call = context;
    if (status == MB_OK) {
        respond(call->portal, call->token, 200, "application/json", "{\"audited\":true}", 16);
    } else {
        echo_buffer body = { 0 };
        buffer_append_cstr(&body, "{\"code\":\"audit_unavailable\",");
        buffer_append_json_field(&body, "message", message.data, message.len);
        buffer_append_cstr(&body, "}");
        if (body.failed) {
            respond_internal_error(call->portal, call->token);
        } else {
            respond(call->portal, call->token, 503, "application/json", body.data, body.len);
        }
        buffer_free(&body);
    }
    free(call);
}

/* POST /audit: records an audit entry with the request body as details (a JSON object),
 * then answers. audit_async (ABI 1.4) never blocks, so it may be called here; the blocking
 * `audit` must not be. */
static void route_audit(mb_plugin_instance *instance, mb_request_token token,
                        const mb_host_request *request) {
    static const char action[] = "echo.audit";
    if (!MB_HAS_FIELD(g_host, mb_host_api, audit_async) || g_host->audit_async == NULL) {
        respond(instance->portal, token, 501, "text/plain", "host has no audit_async", 23);
        return;
    }
    echo_audit_call *call = malloc(sizeof(*call));
    if (call == NULL) {
        respond_internal_error(instance->portal, token);
        return;
    }
    call->portal = instance->portal;
    call->token = token;
    char message[256] = { 0 };
    mb_host_error_buffer error = { message, sizeof(message) };
    mb_status status = g_host->audit_async(g_plugin, instance->portal, action, sizeof(action) - 1,
                                           instance->portal_name, instance->portal_name_len,
                                           (const char *)request->body.data, request->body.len,
                                           audit_done, call, error);
    if (status != MB_OK) {
        /* The completion never runs: answer and free here. */
        free(call);
        echo_buffer body = { 0 };
        buffer_append_cstr(&body, "{\"code\":\"audit_refused\",");
        buffer_append_json_field(&body, "message", (const uint8_t *)message, strlen(message));
        buffer_append_cstr(&body, "}");
        respond_json_buffer(instance, token, 400, &body);
    }
}

/* Everything else: a structured 404. */
static void route_not_found(mb_plugin_instance *instance, mb_request_token token,
                            const mb_host_request *request) {
    echo_buffer body = { 0 };
    buffer_append_cstr(&body, "{\"code\":\"not_found\",\"message\":\"echo-c has no route ");
    buffer_append_json_escaped(&body, request->method.data, request->method.len);
    buffer_append_cstr(&body, " ");
    buffer_append_json_escaped(&body, request->path.data, request->path.len);
    buffer_append_cstr(&body, "\",\"hint\":\"try GET /echo\"}");
    respond_json_buffer(instance, token, 404, &body);
}

/* ------------------------------------------------------------------------------------ */
/* Descriptor callbacks                                                                  */
/* ------------------------------------------------------------------------------------ */

static mb_status echo_init(const mb_host_api *host, const mb_host_plugin *plugin,
                           mb_host_bytes config_json, mb_host_error_buffer error) {
    if (host == NULL) {
        set_error(error, "echo-c: init called without a host table");
        return MB_ERR_INVALID_ARGUMENT;
    }
    if (host->abi_major != MB_ABI_MAJOR) {
        set_error(error, "echo-c: host ABI major %u, plugin built for %u", (unsigned)host->abi_major,
                  (unsigned)MB_ABI_MAJOR);
        return MB_ERR_UNSUPPORTED;
    }
    /* Every host function we call exists in ABI 1.0; service_lookup is the last of them in
     * the table. A plugin that needs a function added in 1.x checks for it the same way. */
    if (!MB_HAS_FIELD(host, mb_host_api, service_lookup)) {
        set_error(error, "echo-c: host table too small (%zu bytes, need %zu)", host->struct_size,
                  offsetof(mb_host_api, service_lookup) + sizeof(host->service_lookup));
        return MB_ERR_UNSUPPORTED;
    }
    if (host->log == NULL || host->counter_add == NULL || host->respond == NULL ||
        host->ws_send == NULL || host->service_lookup == NULL) {
        set_error(error, "echo-c: host table lacks log, counter_add, respond or ws_send");
        return MB_ERR_UNSUPPORTED;
    }

    /* echo-c has no settings, but its config must still be a JSON object. A full JSON
     * parser is out of scope for this example: checking the first non-blank byte is enough
     * to catch a config that is not an object at all. */
    size_t i = 0;
    while (i < config_json.len && (config_json.data[i] == ' ' || config_json.data[i] == '\t' ||
                                   config_json.data[i] == '\n' || config_json.data[i] == '\r')) {
        i++;
    }
    if (i == config_json.len) {
        set_error(error, "echo-c: config must be a JSON object, got empty input");
        return MB_ERR_INVALID_ARGUMENT;
    }
    if (config_json.data[i] != '{') {
        unsigned char c = config_json.data[i];
        if (c >= 0x20 && c < 0x7F) {
            set_error(error, "echo-c: config must be a JSON object, got text starting with '%c'",
                      c);
        } else {
            set_error(error, "echo-c: config must be a JSON object, got byte 0x%02x", c);
        }
        return MB_ERR_INVALID_ARGUMENT;
    }

    pthread_mutex_lock(&g_pool.mutex);
    bool already_running = g_pool.running;
    pthread_mutex_unlock(&g_pool.mutex);
    if (already_running) {
        set_error(error, "echo-c: init called twice without shutdown");
        return MB_ERR_INTERNAL;
    }

    g_host = host;
    g_plugin = plugin;
    mb_status status = pool_start(error);
    if (status != MB_OK) {
        return status;
    }
    log_message(NULL, MB_LOG_DEBUG, "echo-c: initialised");
    return MB_OK;
}

static mb_status echo_instance_create(const mb_host_instance_context *context,
                                      mb_plugin_instance **instance_out, mb_host_error_buffer error) {
    if (context == NULL || instance_out == NULL ||
        !MB_HAS_FIELD(context, mb_host_instance_context, portal_name)) {
        set_error(error, "echo-c: instance_create got an incomplete context");
        return MB_ERR_INVALID_ARGUMENT;
    }
    *instance_out = NULL;

    mb_plugin_instance *instance = calloc(1, sizeof(*instance));
    char *name = malloc(context->portal_name.len + 1);
    if (instance == NULL || name == NULL) {
        free(instance);
        free(name);
        set_error(error, "echo-c: out of memory creating the instance");
        return MB_ERR_INTERNAL;
    }
    /* Copy: context->portal_name is host memory valid only during this call. */
    if (context->portal_name.len > 0) {
        memcpy(name, context->portal_name.data, context->portal_name.len);
    }
    name[context->portal_name.len] = '\0';

    instance->portal = context->portal;
    instance->portal_name = name;
    instance->portal_name_len = context->portal_name.len;
    *instance_out = instance;
    return MB_OK;
}

static void echo_instance_destroy(mb_plugin_instance *instance) {
    if (instance == NULL) {
        return;
    }
    free(instance->portal_name);
    free(instance);
}

/* Called concurrently from any host thread. Must not block: /async hands its waiting to
 * the worker pool instead of sleeping here. */
static void echo_handle_request(mb_plugin_instance *instance, mb_request_token token,
                                const mb_host_request *request) {
    mb_host_bytes method = request->method;
    mb_host_bytes path = request->path;
    bool is_get = bytes_equal(method, "GET");

    if (bytes_equal(path, "/echo") && (is_get || bytes_equal(method, "POST"))) {
        route_echo(instance, token, request);
    } else if (bytes_equal(path, "/async") && is_get) {
        route_async(instance, token, request);
    } else if (bytes_equal(path, "/whoami") && is_get) {
        route_whoami(instance, token, request);
    } else if (bytes_equal(path, "/count") && is_get) {
        route_count(instance, token);
    } else if (bytes_equal(path, "/lookup-echo-service") && is_get) {
        route_lookup(instance, token);
    } else if (bytes_equal(path, "/audit") && bytes_equal(method, "POST")) {
        route_audit(instance, token, request);
    } else {
        route_not_found(instance, token, request);
    }
}

static mb_status echo_ws_open(mb_plugin_instance *instance, mb_connection_id connection,
                              const mb_host_request *request, mb_host_error_buffer error) {
    (void)instance;
    (void)connection;
    (void)request;
    (void)error;
    return MB_OK; /* accept every upgrade */
}

static void echo_ws_message(mb_plugin_instance *instance, mb_connection_id connection, int is_text,
                            mb_host_bytes payload) {
    /* The payload is host memory valid during this call; the host copies what ws_send
     * queues before it returns, so it can be sent straight back. */
    mb_plugin_bytes echo = { .data = payload.data, .len = payload.len };
    if (g_host->ws_send(connection, is_text, echo) != MB_OK) {
        log_message(instance->portal, MB_LOG_DEBUG, "echo-c: ws_send failed, connection gone");
    }
}

static void echo_ws_close(mb_plugin_instance *instance, mb_connection_id connection, uint16_t code) {
    (void)instance;
    (void)connection;
    (void)code;
}

/* Main thread, after every instance was destroyed: join the workers. */
static void echo_shutdown(void) {
    pool_stop();
    log_message(NULL, MB_LOG_DEBUG, "echo-c: shut down");
}

/* ------------------------------------------------------------------------------------ */
/* ABI 1.5: a Studio page, a command and a health report                                 */
/* ------------------------------------------------------------------------------------ */

static const mb_studio_page g_hello_page = {
    .struct_size = sizeof(mb_studio_page),
    .id = "hello",
    .title = "Echo (C)",
    .module = "hello.js",
};
static const mb_studio_page *const g_pages[] = { &g_hello_page, NULL };

static const mb_cli_command g_hello_command = {
    .struct_size = sizeof(mb_cli_command),
    .name = "hello",
    .summary = "Print a greeting (the smallest plugin command).",
    .help = "USAGE: meltybase echo-c hello [--name NAME]\n\n"
            "Prints \"Hello, NAME! (echo-c <version>)\"; NAME defaults to \"world\".",
};
static const mb_cli_command *const g_commands[] = { &g_hello_command, NULL };

/* Writes one formatted line to the command's standard output or error. */
static void cli_print(const mb_host_cli_context *context, int to_error, const char *format, ...) {
    char line[512];
    va_list args;
    va_start(args, format);
    int length = vsnprintf(line, sizeof(line), format, args);
    va_end(args);
    if (length < 0) return;
    if ((size_t)length >= sizeof(line)) length = (int)sizeof(line) - 1;
    mb_plugin_bytes bytes = { (const uint8_t *)line, (size_t)length };
    if (to_error) context->write_err(context, bytes);
    else context->write_out(context, bytes);
}

/* Runs on a blocking-pool thread of the meltybase CLI process, after echo_init. */
static int echo_cli_run(const mb_host_cli_context *context, const char *command, int argc, const char *const *argv) {
    if (strcmp(command, "hello") != 0) {
        cli_print(context, 1, "echo-c: unknown command %s\n", command);
        return 2;
    }
    const char *name = "world";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--name") == 0 && i + 1 < argc) {
            name = argv[++i];
        } else {
            cli_print(context, 1, "echo-c hello: unexpected argument \"%s\"; usage: meltybase echo-c hello [--name NAME]\n", argv[i]);
            return 2;
        }
    }
    cli_print(context, 0, "Hello, %s! (%s %s)\n", name, ECHO_NAME, ECHO_VERSION);
    return 0;
}

/* Blocking pool, any time after init: nothing here can fail. */
static mb_status echo_health(mb_bytes_sink sink, void *sink_context, mb_host_error_buffer error) {
    (void)error;
    static const char report[] = "{\"status\":\"ok\",\"message\":\"echoing\"}";
    sink(sink_context, (mb_host_bytes){ (const uint8_t *)report, sizeof(report) - 1 });
    return MB_OK;
}

/* ------------------------------------------------------------------------------------ */
/* Descriptor and the one exported symbol                                                */
/* ------------------------------------------------------------------------------------ */

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = g_build_signature,
    .name = ECHO_NAME,
    .version = ECHO_VERSION,
    .route_prefix = ECHO_ROUTE_PREFIX,
    .init = echo_init,
    .instance_create = echo_instance_create,
    .instance_destroy = echo_instance_destroy,
    .handle_request = echo_handle_request,
    .ws_open = echo_ws_open,
    .ws_message = echo_ws_message,
    .ws_close = echo_ws_close,
    .shutdown = echo_shutdown,
    /* ABI 1.5 */
    .studio_directory = "echo_c_studio",
    .studio_pages = g_pages,
    .cli_commands = g_commands,
    .cli_run = echo_cli_run,
    .health = echo_health,
};

static void fill_build_signature(void) {
    /* "c;" + "ptr" + pointer width in bits: "c;ptr64" on 64-bit targets. */
    snprintf(g_build_signature, sizeof(g_build_signature), "%sptr%zu",
             MB_BUILD_SIGNATURE_C_PREFIX, sizeof(void *) * 8);
}

__attribute__((visibility("default")))
const mb_plugin_descriptor *meltybase_plugin_entry(void);

/* Compile-time check that the entry matches the header's mb_plugin_entry_fn. */
_Static_assert(_Generic(&meltybase_plugin_entry, mb_plugin_entry_fn: 1, default: 0),
               "meltybase_plugin_entry must match mb_plugin_entry_fn");

__attribute__((visibility("default")))
const mb_plugin_descriptor *meltybase_plugin_entry(void) {
    pthread_once(&g_build_signature_once, fill_build_signature);
    return &g_descriptor;
}

/*
 * meltybase_plugin.h: the one contract between the MeltyBase kernel and its plugins.
 *
 * A plugin is a shared library exporting exactly one function, MB_PLUGIN_ENTRY_SYMBOL,
 * that returns an immortal, plugin-owned mb_plugin_descriptor. The kernel opens it with
 * RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE and never unloads it.
 *
 * Rules that hold for every function below:
 *  - Ownership is in the type names. `mb_host_*` memory belongs to the kernel and is valid
 *    only for the duration of the call that hands it over; a plugin that keeps bytes copies
 *    them. `mb_plugin_*` memory belongs to the plugin; the kernel copies what it needs
 *    before the call returns, unless a function says otherwise.
 *  - Nothing throws or traps across the boundary. Failures are an mb_status plus a
 *    message written into an mb_host_error_buffer (always NUL-terminated, truncated to
 *    its capacity).
 *  - Strings carry an explicit length unless a field says "NUL-terminated". Text the host
 *    generates is UTF-8; text that comes off the network (path, query, headers) is passed
 *    as received, not percent-decoded.
 *  - A pointer may be NULL wherever its length or count is 0.
 *  - Blocking: every host function says whether it may block the calling thread. One that
 *    "never blocks" returns after in-memory work; one that "may block" waits for the
 *    database or a lock held across I/O and must not be called from handle_request, ws_*
 *    or a completion (those run on the kernel's async executor or event loops): use its
 *    asynchronous twin. The entry points init, instance_create, instance_destroy and
 *    shutdown run on the kernel's bounded blocking thread pool, so they may block (briefly:
 *    they hold a pool thread), but never while the kernel holds a lock.
 *  - Tables only grow at the end (append-only). A plugin checks host->struct_size before
 *    touching a host function added in a later minor version (MB_HAS_FIELD below); the
 *    kernel treats a NULL optional plugin callback, or one beyond the descriptor's
 *    struct_size, as "not supported". Field offsets, sizes and types of every minor
 *    version are frozen by a test (Tests/Integration/abi_freeze.py): a field is never
 *    moved, resized, retyped or inserted before the end, and a later version's first new
 *    field starts at or after the previous version's sizeof (never in its tail padding,
 *    which MB_HAS_FIELD would otherwise report as present on an old plugin).
 *  - Lifetime: instance_destroy comes a grace period (5 s) after the instance's last
 *    request and connection completed. Work a plugin runs on its own threads (a worker
 *    that answers later, a timer) is invisible to the host: such a worker holds its own
 *    reference to the instance (a reference count the plugin keeps) and the instance's
 *    memory is freed when the last reference is dropped, not in instance_destroy itself.
 */
#ifndef MELTYBASE_PLUGIN_H
#define MELTYBASE_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ABI version. Major differs: the kernel refuses the plugin. Minor: tables grew at the end. */
#define MB_ABI_MAJOR 1
#define MB_ABI_MINOR 9

/* The one exported entry symbol: `const mb_plugin_descriptor *meltybase_plugin_entry(void)`. */
#define MB_PLUGIN_ENTRY_SYMBOL "meltybase_plugin_entry"

/* Build signature of a plugin written in C: pointer size only matters. */
#define MB_BUILD_SIGNATURE_C_PREFIX "c;"

/* True when the versioned struct at `ptr`, as the other side compiled it, contains `field`:
 * its struct_size covers offsetof(type, field) + sizeof(field). Every versioned struct
 * (mb_host_api, mb_host_request, mb_host_instance_context, mb_plugin_descriptor, ...) starts
 * with `size_t struct_size`, and tables only grow at the end, so this is how a plugin asks
 * "does this host (or this request) already have that field?" before reading or calling it:
 *
 *     if (MB_HAS_FIELD(host, mb_host_api, audit_async) && host->audit_async != NULL) ...
 *     if (MB_HAS_FIELD(request, mb_host_request, credential_json)) ...
 *
 * `ptr` is evaluated twice and must not be NULL; `type` is the struct's typedef name. */
#define MB_HAS_FIELD(ptr, type, field) \
    ((ptr)->struct_size >= offsetof(type, field) + sizeof(((type *)0)->field))

/* ------------------------------------------------------------------------------------ */
/* Status codes                                                                          */
/* ------------------------------------------------------------------------------------ */

/** Result of every fallible call across the boundary. */
typedef enum mb_status {
    MB_OK = 0,
    /** An argument was malformed (bad JSON config, unknown connection, NULL where required). */
    MB_ERR_INVALID_ARGUMENT = 1,
    /** The named thing (service, connection, request token) does not exist (any more). */
    MB_ERR_NOT_FOUND = 2,
    /** Refused by policy: service of a plugin not enabled for this portal, egress denied. */
    MB_ERR_REFUSED = 3,
    /** A dependency is down (database, network); the caller may retry later. */
    MB_ERR_UNAVAILABLE = 4,
    /** A bug or an unexpected failure inside the callee. */
    MB_ERR_INTERNAL = 5,
    /** The operation is not supported by this host or plugin version. */
    MB_ERR_UNSUPPORTED = 6,
    /** A name is already taken (service export, plugin name). */
    MB_ERR_ALREADY_EXISTS = 7
} mb_status;

/** Log levels understood by the host logger (swift-log levels). */
typedef enum mb_log_level {
    MB_LOG_TRACE = 0,
    MB_LOG_DEBUG = 1,
    MB_LOG_INFO = 2,
    MB_LOG_NOTICE = 3,
    MB_LOG_WARNING = 4,
    MB_LOG_ERROR = 5,
    MB_LOG_CRITICAL = 6
} mb_log_level;

/* ------------------------------------------------------------------------------------ */
/* Byte and string views                                                                 */
/* ------------------------------------------------------------------------------------ */

/** Bytes owned by the host, valid only during the call that passes them. */
typedef struct mb_host_bytes {
    const uint8_t *data;
    size_t len;
} mb_host_bytes;

/** Bytes owned by the plugin; the host copies them before the call returns. */
typedef struct mb_plugin_bytes {
    const uint8_t *data;
    size_t len;
} mb_plugin_bytes;

/** A host-owned writable buffer for an error message. Write at most `capacity` bytes,
 *  NUL-terminated (snprintf does the right thing). */
typedef struct mb_host_error_buffer {
    char *data;
    size_t capacity;
} mb_host_error_buffer;

/** A host-owned header (name and value), valid only during the call. */
typedef struct mb_host_header {
    mb_host_bytes name;
    mb_host_bytes value;
} mb_host_header;

/** A plugin-owned header; the host copies it before the call returns. */
typedef struct mb_plugin_header {
    mb_plugin_bytes name;
    mb_plugin_bytes value;
} mb_plugin_header;

/* ------------------------------------------------------------------------------------ */
/* Handles                                                                               */
/* ------------------------------------------------------------------------------------ */

/** Opaque host handle of one portal (tenant). Valid from instance_create until
 *  instance_destroy of the instance it was given to returns. */
typedef struct mb_host_portal mb_host_portal;

/** Opaque host handle of one loaded plugin, given to `init`. Immortal. */
typedef struct mb_host_plugin mb_host_plugin;

/** Opaque plugin-owned state of one (plugin, portal) pair. */
typedef struct mb_plugin_instance mb_plugin_instance;

/** Identifies one pending HTTP request; completed exactly once with host->respond.
 *  Tokens are never reused within a process, so a late second respond is refused. */
typedef uint64_t mb_request_token;

/** Identifies one open WebSocket connection. Never reused within a process. */
typedef uint64_t mb_connection_id;

/* ------------------------------------------------------------------------------------ */
/* Requests                                                                              */
/* ------------------------------------------------------------------------------------ */

/** An HTTP request routed to a plugin. Every field is host-owned and valid only during
 *  the handle_request (or ws_open) call; the plugin copies what it keeps. */
typedef struct mb_host_request {
    size_t struct_size;
    /** "GET", "POST", ... */
    mb_host_bytes method;
    /** Path below the plugin's prefix, starting with "/" (e.g. "/v1/items/7"). */
    mb_host_bytes path;
    /** Raw query string without "?", possibly empty. */
    mb_host_bytes query;
    const mb_host_header *headers;
    size_t header_count;
    /** Whole request body (already bounded by the configured body limit). */
    mb_host_bytes body;
    /** Portal name (e.g. "acme"). */
    mb_host_bytes portal_name;
    /** The kernel's request id, also sent back as the x-request-id header. */
    mb_host_bytes request_id;
    /** Client address as text ("127.0.0.1"). */
    mb_host_bytes remote_address;
    /** Subject of the verified client certificate, empty without mTLS. */
    mb_host_bytes client_certificate_subject;

    /* ---- ABI 1.1 (check struct_size before reading) ---- */

    /** The route prefix that matched: the descriptor's route_prefix or one of its
     *  extra_route_prefixes (e.g. "rest" or "auth"). */
    mb_host_bytes route_prefix;
    /** The caller's credential as the kernel verified it, a JSON object. The token is taken
     *  from `Authorization: Bearer <jwt>`, else from the `apikey` header:
     *    {"kind":"none"}                                   no token was sent
     *    {"kind":"portal","role":R,"subject":S,"aal":A,"claims":{...}}
     *        a JWT signed with this portal's secret (API keys and user tokens); R is its
     *        `role` claim ("anon", "authenticated", "service_role"), S its `sub`, A its `aal`
     *    {"kind":"admin","role":"admin","subject":S,"aal":"aal1"|"aal2","claims":{...}}
     *        a kernel admin access token
     *    {"kind":"invalid","reason":"..."}                 expired, bad signature (e.g. a key
     *        of another portal), malformed; the reason is safe to show to the caller
     *  A key of one portal is never "portal" on another portal. */
    mb_host_bytes credential_json;

    /* ---- ABI 1.7 (check struct_size before reading) ---- */

    /** Nonzero when the body is streamed instead of in `body` (which is then empty): read
     *  it with host->request_body_read. Only requests on one of the plugin's
     *  streaming_route_prefixes are streamed; WebSocket opens never are. */
    int32_t body_streamed;

    /* ---- ABI 1.9 (check struct_size before reading) ---- */

    /** On a streamed request (body_streamed set): the whole body when the kernel read it
     *  before dispatching (a small body of declared length; `data` is non-NULL then, also for
     *  an empty body), so the plugin can take it without reading. `data` is NULL when the
     *  body is still to be read. Either way request_body_read works as in 1.7 (it answers
     *  these same bytes, then the end), so plugins that ignore this field are served alike.
     *  Host-owned, valid only during handle_request. */
    mb_host_bytes whole_body;
} mb_host_request;

/** An outbound HTTP request a plugin asks the host to perform (egress goes through the host). */
typedef struct mb_plugin_http_request {
    size_t struct_size;
    mb_plugin_bytes method;
    /** Absolute http:// or https:// URL. */
    mb_plugin_bytes url;
    const mb_plugin_header *headers;
    size_t header_count;
    mb_plugin_bytes body;
    /** Whole-request timeout in milliseconds; 0 means the host default (30 s). */
    uint32_t timeout_ms;
} mb_plugin_http_request;

/** The answer to an outbound request, host-owned, valid only during the completion call.
 *  On a transport failure `status` is not MB_OK, `http_status` is 0 and `error` says why. */
typedef struct mb_host_http_response {
    size_t struct_size;
    mb_status status;
    uint16_t http_status;
    const mb_host_header *headers;
    size_t header_count;
    mb_host_bytes body;
    mb_host_bytes error;
} mb_host_http_response;

/** Completion of portal_jwt_sign: the token when `status` is MB_OK, else a message.
 *  Host-owned, valid only during the call. Runs on a host thread. */
typedef void (*mb_token_completion)(void *plugin_context, mb_status status, mb_host_bytes token_or_message);

/** Receives the bytes a synchronous host function produced (secret_seal, secret_open).
 *  Host-owned, valid only during the call; runs before that function returns. */
typedef void (*mb_bytes_sink)(void *plugin_context, mb_host_bytes bytes);

/** Completion of a host call that has no result but its status (audit_async): `message`
 *  says why when `status` is not MB_OK (empty otherwise). Host-owned, valid only during the
 *  call. Runs exactly once on a host thread. */
typedef void (*mb_status_completion)(void *plugin_context, mb_status status, mb_host_bytes message);

/** Completion of portal_token_verify: when `status` is MB_OK, `credential_json_or_message`
 *  is the credential JSON (the `credential_json` shape of mb_host_request, "invalid" with a
 *  reason included); otherwise a message saying why the token could not be checked.
 *  Host-owned, valid only during the call. Runs exactly once on a host thread. */
typedef void (*mb_credential_completion)(void *plugin_context, mb_status status, mb_host_bytes credential_json_or_message);

/** Called once per outbound request, from any host thread. */
typedef void (*mb_http_completion)(void *plugin_context, const mb_host_http_response *response);

/** Completion of request_body_read: with MB_OK, `chunk` is the next part of the body, or
 *  empty at its end; otherwise `chunk` is a message saying why the body cannot be read
 *  (MB_ERR_INVALID_ARGUMENT: larger than the kernel's body_limit_bytes; MB_ERR_UNAVAILABLE:
 *  the client went away or sent a malformed body). Host-owned, valid only during the call.
 *  Runs exactly once, on a host thread. */
typedef void (*mb_body_chunk_completion)(void *plugin_context, mb_status status, mb_host_bytes chunk);

/** What a service lookup yields: the exporter's immortal function table and the exporter's
 *  instance for the caller's portal. By convention each function in a service table takes
 *  the exporter instance as its first argument, which keeps every call inside one portal. */
typedef struct mb_service_binding {
    const void *table;
    size_t table_size;
    mb_plugin_instance *instance;
} mb_service_binding;

/** Completion of a JSON service call: `json_or_message` is the JSON result when `status`
 *  is MB_OK, else a human-readable message. Owned by the callee, valid only during the call. */
typedef void (*mb_service_reply)(void *caller_context, mb_status status, mb_plugin_bytes json_or_message);

/** The conventional table of a JSON service (what the Swift SDK exports and calls): one
 *  asynchronous call taking a method name and a JSON argument. Other tables are allowed;
 *  their header is the exporter's contract. */
typedef struct mb_json_service {
    size_t struct_size;
    /** Starts `method` for the exporter instance (from the binding). Any thread. Returns at
     *  once; `reply` runs exactly once, from any thread, unless the return value is not
     *  MB_OK (then it never runs). Arguments are host-style borrowed: valid during the call. */
    mb_status (*call)(mb_plugin_instance *instance, mb_host_bytes method, mb_host_bytes json,
                      mb_service_reply reply, void *caller_context);
} mb_json_service;

/* ------------------------------------------------------------------------------------ */
/* What the host offers (append-only)                                                    */
/* ------------------------------------------------------------------------------------ */

typedef struct mb_host_api {
    size_t struct_size;
    uint32_t abi_major;
    uint32_t abi_minor;

    /** Writes one structured log line tagged with the plugin and, when `portal` is not
     *  NULL, the portal. Any thread. Never fails. Never blocks. */
    void (*log)(const mb_host_plugin *plugin, const mb_host_portal *portal, mb_log_level level,
                const char *message, size_t message_len);

    /** Appends an audit entry. `details_json` must be a JSON object or empty.
     *  Returns MB_ERR_INVALID_ARGUMENT for bad JSON, MB_ERR_UNAVAILABLE when the audit
     *  store is down (the action should then be refused by the plugin).
     *  MAY BLOCK until the entry is committed to the system database (one group commit,
     *  milliseconds, longer while the database is slow). So NOT from handle_request, ws_open,
     *  ws_message, ws_close, cancel_request or any host completion: those run on the
     *  kernel's event loops and async executor, and a blocked one stalls other requests.
     *  There, use audit_async (ABI 1.4), which reports the commit through a completion.
     *  `audit` is for init, instance_create, instance_destroy, shutdown and the plugin's own
     *  threads. */
    mb_status (*audit)(const mb_host_plugin *plugin, const mb_host_portal *portal,
                       const char *action, size_t action_len, const char *target, size_t target_len,
                       const char *details_json, size_t details_len, mb_host_error_buffer error);

    /** Adds `delta` to the counter `meltybase_plugin_<name>_total{plugin, portal}`. Name is
     *  [a-z0-9_]; other characters are replaced by "_". Any thread. Never fails. Never blocks. */
    void (*counter_add)(const mb_host_plugin *plugin, const mb_host_portal *portal,
                        const char *name, size_t name_len, int64_t delta);

    /** Completes a request exactly once, from any thread. The host copies headers and body
     *  before returning. Returns MB_ERR_NOT_FOUND for an unknown, timed-out or already
     *  completed token; MB_ERR_INVALID_ARGUMENT for a status outside 100-599 (the client
     *  then gets a 502). Never blocks. */
    mb_status (*respond)(mb_request_token token, uint16_t status, const mb_plugin_header *headers,
                         size_t header_count, mb_plugin_bytes body);

    /** Sends one frame (text when is_text != 0, else binary) to a connection. Any thread.
     *  Returns MB_ERR_NOT_FOUND when the connection is gone. Frames to one connection are
     *  delivered in call order. Never blocks (the frame is queued). */
    mb_status (*ws_send)(mb_connection_id connection, int is_text, mb_plugin_bytes payload);

    /** Sends one frame to many connections; unknown ones are skipped. Returns the number of
     *  connections the frame was queued for. Any thread. Never blocks. */
    size_t (*ws_broadcast)(const mb_connection_id *connections, size_t connection_count, int is_text,
                           mb_plugin_bytes payload);

    /** Closes a connection with a WebSocket close code (1000 normal). Any thread.
     *  Returns MB_ERR_NOT_FOUND when it is already gone. Never blocks. */
    mb_status (*ws_close)(mb_connection_id connection, uint16_t code, mb_plugin_bytes reason);

    /** Exports a named, versioned function table (e.g. "vault", major 1). `table` must stay
     *  valid for the life of the process. From `init` only. Returns
     *  MB_ERR_ALREADY_EXISTS when another plugin exports that name and major. Never blocks. */
    mb_status (*service_export)(const mb_host_plugin *plugin, const char *name, size_t name_len,
                                uint32_t major, const void *table, size_t table_size,
                                mb_host_error_buffer error);

    /** Looks up a service for a portal. Any thread. Returns MB_ERR_NOT_FOUND when nobody
     *  exports it, MB_ERR_REFUSED when the exporting plugin is not enabled for `portal`.
     *  The binding is valid for calls started within 30 seconds: the host keeps the
     *  exporter's instance alive that long even if the plugin is disabled meanwhile. Look the
     *  service up again for later calls (it is cheap); never cache a binding. Never blocks. */
    mb_status (*service_lookup)(const mb_host_portal *portal, const char *name, size_t name_len,
                                uint32_t major, mb_service_binding *binding_out,
                                mb_host_error_buffer error);

    /** Performs an outbound HTTP request. Returns at once; `completion` runs exactly once on
     *  a host thread (also on failure) with `plugin_context`. Returns MB_ERR_INVALID_ARGUMENT
     *  (completion not called) for a malformed URL, MB_ERR_REFUSED when egress policy denies.
     *  Never blocks (name resolution and the request run on host threads). */
    mb_status (*http_fetch)(const mb_host_plugin *plugin, const mb_host_portal *portal,
                            const mb_plugin_http_request *request, mb_http_completion completion,
                            void *plugin_context, mb_host_error_buffer error);

    /** Name of a portal as host-owned bytes valid while the portal handle is. Never fails.
     *  Never blocks. */
    mb_host_bytes (*portal_name)(const mb_host_portal *portal);

    /* ---- ABI 1.1 (check struct_size before calling) ---- */

    /** libpq conninfo (NUL-terminated) of the kernel's Postgres server: the system database,
     *  connecting as the kernel's role (embedded mode: a unix socket with trust auth). A
     *  plugin that keeps its own tables uses its own schema or database there. `portal` may
     *  be NULL; with a portal the answer is the server of the kernel serving that portal.
     *  Host-owned; valid for the life of the process. Any thread. Never NULL. Never blocks
     *  (connecting with it does: do that off handle_request). */
    const char *(*postgres_conninfo)(const mb_host_plugin *plugin, const mb_host_portal *portal);

    /** Signs `claims_json` (a JSON object) as an HS256 JWT with the portal's secret, the same
     *  secret the kernel verifies `credential_json` against. The secret never leaves the
     *  kernel. Returns at once; `completion` runs exactly once on a host thread unless the
     *  return value is not MB_OK (MB_ERR_INVALID_ARGUMENT for claims that are not an object).
     *  Never blocks. */
    mb_status (*portal_jwt_sign)(const mb_host_portal *portal, mb_host_bytes claims_json,
                                 mb_token_completion completion, void *plugin_context,
                                 mb_host_error_buffer error);

    /* ---- ABI 1.2 (check struct_size before calling) ---- */

    /** Encrypts `plaintext` for storage (XChaCha20-Poly1305 under the kernel's secret-box key,
     *  `<data>/mfa-secret.key`, which never leaves the kernel), bound to the plugin, the portal
     *  and `context` (a row id, a purpose): a value copied onto another row, portal or plugin
     *  does not open. For secrets a plugin must read back, such as its users' TOTP seeds.
     *  Synchronous: `sink` receives the sealed text (printable ASCII, about 4/3 of the
     *  plaintext plus 60 bytes) before the call returns. `portal` must not be NULL. Any thread.
     *  Never blocks (in-memory cryptography, microseconds). */
    mb_status (*secret_seal)(const mb_host_plugin *plugin, const mb_host_portal *portal,
                             mb_host_bytes context, mb_host_bytes plaintext,
                             mb_bytes_sink sink, void *plugin_context, mb_host_error_buffer error);

    /** Reverses secret_seal for the same plugin, portal and context; `sink` receives the
     *  plaintext (the host wipes its copy afterwards; the plugin wipes its own). Returns
     *  MB_ERR_REFUSED (sink not called) for a value altered, moved to another row or sealed
     *  under another kernel's key, with a message that says which and never the value;
     *  MB_ERR_INVALID_ARGUMENT for text that is not a sealed value. Synchronous. Any thread.
     *  Never blocks. */
    mb_status (*secret_open)(const mb_host_plugin *plugin, const mb_host_portal *portal,
                             mb_host_bytes context, mb_host_bytes sealed,
                             mb_bytes_sink sink, void *plugin_context, mb_host_error_buffer error);

    /* ---- ABI 1.4 (check struct_size before calling) ---- */

    /** audit without blocking: checks the arguments like `audit`, then returns at once;
     *  `completion` runs exactly once on a host thread once the entry is committed (MB_OK)
     *  or could not be stored (MB_ERR_UNAVAILABLE: refuse the action), unless the return
     *  value is not MB_OK (MB_ERR_INVALID_ARGUMENT for bad JSON or a NULL handle or
     *  completion; completion not called). Any thread, including handle_request. Never blocks. */
    mb_status (*audit_async)(const mb_host_plugin *plugin, const mb_host_portal *portal,
                             const char *action, size_t action_len, const char *target, size_t target_len,
                             const char *details_json, size_t details_len,
                             mb_status_completion completion, void *plugin_context, mb_host_error_buffer error);

    /* ---- ABI 1.6 (check struct_size before calling) ---- */

    /** Verifies `token` (a JWT a client sent outside the HTTP headers, e.g. the access_token
     *  of a WebSocket message) for `portal` exactly as the kernel verifies a request's
     *  credential, with the same cache and checks. `completion` receives (MB_OK) the
     *  `credential_json` documented on mb_host_request: {"kind":"portal",...} for a key or
     *  user token of this portal; {"kind":"invalid","reason":...} for an expired, malformed
     *  or foreign token (a key of another portal); {"kind":"none"} for an empty token; an
     *  admin access token answers {"kind":"admin",...} where a portal route would accept it
     *  (live session at AAL2; never when [admin] require_client_certificate is on, as no
     *  certificate comes with the token) and {"kind":"invalid","reason":...} where a portal
     *  route would refuse it. Returns at once; `completion` runs exactly once on a host thread
     *  unless the return value is not MB_OK (MB_ERR_INVALID_ARGUMENT for a NULL portal or
     *  completion, MB_ERR_UNSUPPORTED in a process that serves no portals, such as a plugin
     *  command's; completion not called). A completion status other than MB_OK
     *  (MB_ERR_UNAVAILABLE) means the token could not be checked (the system database is
     *  down): treat it as not verified. Any thread, including handle_request and ws_message.
     *  Never blocks. */
    mb_status (*portal_token_verify)(const mb_host_portal *portal, mb_host_bytes token,
                                     mb_credential_completion completion, void *plugin_context,
                                     mb_host_error_buffer error);

    /** URL of the kernel's Redis (NUL-terminated): the embedded Redis's in embedded mode
     *  (unix:///...), else `[redis] url`; "" when the kernel runs without Redis. It may carry
     *  a password (redis://:password@host:port/db): never log it as is. For a plugin's own
     *  connections, e.g. pub/sub fan-out between kernels. Host-owned; valid for the life of
     *  the process. Any thread. Never NULL. Never blocks (connecting with it does: do that
     *  off handle_request). */
    const char *(*redis_url)(const mb_host_plugin *plugin);

    /* ---- ABI 1.7: streamed bodies (check struct_size before calling) ---- */

    /** Reads the next chunk of a streamed request body (mb_host_request.body_streamed).
     *  `completion` runs exactly once on a host thread, unless the return value is not
     *  MB_OK: MB_ERR_NOT_FOUND for an unknown or completed token, MB_ERR_UNSUPPORTED for a
     *  request whose body is not streamed, MB_ERR_REFUSED while another read of the token is
     *  pending (one read at a time: the next read asks for more, which is the backpressure).
     *  Chunks arrive as the client sends them, at most 1 MiB each. The body may still be read
     *  after respond_start. Any thread. Never blocks. */
    mb_status (*request_body_read)(mb_request_token token, mb_body_chunk_completion completion, void *plugin_context);

    /** Starts a streamed response to a request on one of the plugin's
     *  streaming_route_prefixes: status and headers now (copied before returning), the body
     *  through respond_write, then respond_end. Replaces `respond` for that token. Returns
     *  MB_ERR_NOT_FOUND for an unknown, timed-out or completed token, MB_ERR_UNSUPPORTED for a
     *  token of another prefix, MB_ERR_INVALID_ARGUMENT for a status outside 100-599 or a
     *  second start. Any thread. Never blocks. */
    mb_status (*respond_start)(mb_request_token token, uint16_t status, const mb_plugin_header *headers,
                               size_t header_count);

    /** Queues `chunk` (copied before returning) of a started response. `written` runs exactly
     *  once on a host thread when the chunk was handed to the client's connection (MB_OK) or
     *  can no longer be (MB_ERR_UNAVAILABLE: the client went away; the host then also calls
     *  cancel_request), unless the return value is not MB_OK (MB_ERR_NOT_FOUND: unknown or
     *  ended token; MB_ERR_INVALID_ARGUMENT: not started). Wait for `written` before the next
     *  write: that is the backpressure. `written` may be NULL (fire and forget). Any thread.
     *  Never blocks. */
    mb_status (*respond_write)(mb_request_token token, mb_plugin_bytes chunk, mb_status_completion written,
                               void *plugin_context);

    /** Ends a started response; the token is completed. `aborted` nonzero ends it as a
     *  failure instead (the host closes the connection without finishing the body, so the
     *  client sees a truncated response rather than a short one). Returns MB_ERR_NOT_FOUND
     *  for an unknown or ended token. Any thread. Never blocks. */
    mb_status (*respond_end)(mb_request_token token, int32_t aborted);

    /* ---- ABI 1.8: usage metering (check struct_size before calling) ---- */

    /** Records that `member` (e.g. a user id) was active this month in the portal's set
     *  `set_name` (1-57 of a-z, 0-9 and '_', e.g. "auth_users", so that active_<set_name> is a
     *  metric name of at most 64): the Hub counts each member
     *  once per portal, set and (UTC) month as the metric active_<set_name>, storing only
     *  the SHA-256 of the member. Returns MB_ERR_INVALID_ARGUMENT for a NULL portal, a bad
     *  set name or an empty member (1-1024 bytes), MB_ERR_UNSUPPORTED when the kernel runs
     *  with metering off; MB_OK otherwise (the mark is written with the next flush). Any
     *  thread. Never blocks. */
    mb_status (*usage_mark)(const mb_host_plugin *plugin, const mb_host_portal *portal, const char *set_name,
                            size_t set_name_len, const char *member, size_t member_len);
} mb_host_api;

/* ------------------------------------------------------------------------------------ */
/* What a plugin offers                                                                  */
/* ------------------------------------------------------------------------------------ */

/** Handed to instance_create, host-owned, valid only during the call. */
typedef struct mb_host_instance_context {
    size_t struct_size;
    const mb_host_portal *portal;
    mb_host_bytes portal_name;
    /** The plugin's own TOML subtable ([plugins.<name>.config]) as a JSON object; "{}" when
     *  the file has none. The same bytes `init` received. */
    mb_host_bytes config_json;
} mb_host_instance_context;

/* ---- ABI 1.5: Studio pages, command-line commands, health ---- */

/** One page a plugin adds to the Studio (the admin dashboard). Plugin-owned, immortal. */
typedef struct mb_studio_page {
    size_t struct_size;
    /** NUL-terminated, 1 to 63 characters of [a-z0-9_-]. The page's address is
     *  /dashboard/plugins/<plugin name>/<id>; unique within the plugin. */
    const char *id;
    /** NUL-terminated navigation label (UTF-8, 1 to 64 bytes). */
    const char *title;
    /** NUL-terminated path of the page's JavaScript module inside the plugin's Studio folder
     *  (studio_directory), e.g. "pages/items.js": [A-Za-z0-9._/-], no "..", no leading "/"
     *  and no dotfile segment. The file must exist there when the kernel loads the plugin.
     *  Its default export is `{ title, render(context) }` (docs/plugin-pages-and-commands.md). */
    const char *module;
} mb_studio_page;

/** One command a plugin adds to the command line: `meltybase <plugin> <name> [args]`.
 *  Plugin-owned, immortal. */
typedef struct mb_cli_command {
    size_t struct_size;
    /** NUL-terminated, 1 to 63 characters of [a-z0-9-], not starting with "-"; unique
     *  within the plugin. */
    const char *name;
    /** NUL-terminated one-line summary, shown by `meltybase <plugin> --help`. */
    const char *summary;
    /** NUL-terminated full usage text, printed as is by `meltybase <plugin> <name> --help`
     *  (the kernel answers --help itself; cli_run never sees it). May be NULL: the summary. */
    const char *help;
} mb_cli_command;

/** What cli_run receives: host-owned, valid only during the cli_run call. The command runs
 *  in a short-lived `meltybase` process that loaded the plugin alone and called its `init`
 *  with this same host table and plugin handle: host->audit (MAY BLOCK, fine here),
 *  host->log, host->postgres_conninfo(plugin, NULL) (the system database; the CLI starts
 *  the embedded Postgres for the command's duration when no kernel runs it), audit_async,
 *  counter_add, service_export and redis_url (ABI 1.6: the configured or running embedded
 *  Redis, else "") work as in a kernel. There are no portals, requests or connections in
 *  that process, so the functions that need a portal (secret_seal, secret_open,
 *  portal_jwt_sign, service_lookup, portal_token_verify) refuse. */
typedef struct mb_host_cli_context {
    size_t struct_size;
    /** The host table `init` received. */
    const mb_host_api *host;
    /** The plugin's handle, as `init` received it. */
    const mb_host_plugin *plugin;
    /** The plugin's [plugins.<name>.config] table as a JSON object, as `init` received it. */
    mb_host_bytes config_json;
    /** Writes bytes to the process's standard output (no newline added). Any thread, but
     *  only until cli_run returns; calls are written whole, in call order. Never fails.
     *  Blocks while the terminal or pipe is full. */
    void (*write_out)(const struct mb_host_cli_context *context, mb_plugin_bytes bytes);
    /** Same for standard error (messages for the user, warnings). */
    void (*write_err)(const struct mb_host_cli_context *context, mb_plugin_bytes bytes);
} mb_host_cli_context;

typedef struct mb_plugin_descriptor {
    /** sizeof(mb_plugin_descriptor) as the plugin was compiled. */
    size_t struct_size;
    /** Must equal MB_ABI_MAJOR. */
    uint32_t abi_major;
    /** The MB_ABI_MINOR the plugin was compiled against. */
    uint32_t abi_minor;
    /** NUL-terminated. "c;ptr64" for C; "swift-<compiler version>;ptr64" for Swift plugins,
     *  which must come from the same toolchain as the kernel (Swift's ABI is not stable on Linux). */
    const char *build_signature;
    /** NUL-terminated unique name, [a-z0-9_-]. */
    const char *name;
    /** NUL-terminated semantic version of the plugin. */
    const char *version;
    /** NUL-terminated route prefix below /p/<portal>/ (e.g. "rest"), [a-z0-9_-]. */
    const char *route_prefix;

    /** Required. Global init, once, before any instance, on a thread of the kernel's
     *  blocking pool (never the process main thread, an event loop or the async executor),
     *  never concurrently with another plugin's init and never under a kernel lock. `config_json` is the
     *  plugin's TOML subtable as JSON. Non-OK refuses the plugin (message in `error`). */
    mb_status (*init)(const mb_host_api *host, const mb_host_plugin *plugin, mb_host_bytes config_json,
                      mb_host_error_buffer error);

    /** Required. Creates the instance for one portal, on a thread of the kernel's blocking
     *  pool, never concurrently for the same portal, never under a kernel lock: a slow one
     *  delays only its own portal's reload, never requests. Non-OK: the plugin stays disabled for that portal. */
    mb_status (*instance_create)(const mb_host_instance_context *context, mb_plugin_instance **instance_out,
                                 mb_host_error_buffer error);

    /** Required. Destroys an instance a grace period (5 s) after its last request and
     *  connection completed, so late host calls for it are still safe; at process shutdown
     *  as soon as they completed. Service bindings must be looked up per use, not kept.
     *  Runs on a thread of the kernel's blocking pool. The host counts only its own calls:
     *  a worker thread of the plugin that still uses the instance (to respond later, say)
     *  must hold its own reference, and the plugin frees the instance when the last one is
     *  dropped (instance_destroy drops the host's). */
    void (*instance_destroy)(mb_plugin_instance *instance);

    /** Required. Handles one HTTP request. Called concurrently from any host thread; must
     *  not block. The plugin completes it exactly once with host->respond, from any thread,
     *  now or later. A request never completed is answered 504 by the host after its timeout. */
    void (*handle_request)(mb_plugin_instance *instance, mb_request_token token, const mb_host_request *request);

    /** Optional. A WebSocket connection was opened on the plugin's prefix (the request has
     *  no body). Return MB_OK to keep it; anything else makes the host close it at once with
     *  code 1008 (policy violation) and `error` as the reason. NULL: the plugin does not
     *  accept WebSockets; the host completes the upgrade and closes the connection at once
     *  with code 1008 and the reason `plugin "<name>" does not accept WebSocket connections`
     *  (a failed upgrade could only be a bare 400, so refusals are close frames).
     *  host->ws_send may be called from inside. */
    mb_status (*ws_open)(mb_plugin_instance *instance, mb_connection_id connection,
                         const mb_host_request *request, mb_host_error_buffer error);

    /** Optional. One complete frame arrived. Calls for one connection are sequential. */
    void (*ws_message)(mb_plugin_instance *instance, mb_connection_id connection, int is_text,
                       mb_host_bytes payload);

    /** Optional. The connection closed (by either side); its id is dead after this returns. */
    void (*ws_close)(mb_plugin_instance *instance, mb_connection_id connection, uint16_t code);

    /** Optional. Process shutdown, after every instance was destroyed; called for every
     *  plugin whose init returned MB_OK, on a thread of the kernel's blocking pool. Join
     *  background threads here. Threads a plugin
     *  starts should block all signals (the kernel handles SIGTERM and SIGINT). */
    void (*shutdown)(void);

    /* ---- ABI 1.1 ---- */

    /** Optional. NULL-terminated list of further route prefixes the plugin serves besides
     *  route_prefix (e.g. {"auth", "sql", NULL}); same rules as route_prefix. Immortal.
     *  Requests carry the prefix that matched in mb_host_request.route_prefix. */
    const char *const *extra_route_prefixes;

    /* ---- ABI 1.3 ---- */

    /** Optional. The host gave up on a request the plugin has not completed: its client
     *  disconnected, or its timeout passed (the host has answered 504). The plugin should
     *  stop the work (cancel its database queries, say); a later host->respond for the token
     *  is accepted and ignored. Called at most once per token, on a host thread, never from
     *  inside handle_request; must not block. */
    void (*cancel_request)(mb_plugin_instance *instance, mb_request_token token);

    /* ---- ABI 1.5 ---- */

    /** Optional. NUL-terminated folder holding the plugin's Studio files, relative to the
     *  folder of the plugin's shared library (e.g. "echo_c_studio" or
     *  "MeltyBase_DatabasePlugin.resources/Studio"): [A-Za-z0-9._/-], no "..", no leading
     *  "/". The kernel reads it once when it loads the plugin (at most 256 files and 8 MiB;
     *  dotfiles skipped; symbolic links pointing outside the folder refused) and serves it
     *  under /dashboard/plugins/<name>/assets/<version>/ with the Studio's security headers.
     *  Required when studio_pages is not empty. Immortal. */
    const char *studio_directory;
    /** Optional. NULL-terminated list (at most 32) of the plugin's Studio pages. The Studio
     *  shows them in its navigation to an admin when at least one portal enables the plugin.
     *  A bad id, title or module refuses the plugin at load. Immortal. */
    const mb_studio_page *const *studio_pages;
    /** Optional. NULL-terminated list (at most 64) of the plugin's commands. A bad or
     *  duplicate name refuses the plugin at load. Immortal. */
    const mb_cli_command *const *cli_commands;
    /** Optional; required when cli_commands is not empty. Runs `command` (one of
     *  cli_commands' names) with the arguments that followed it (`argc` NUL-terminated
     *  strings, host-owned, valid during the call; `--config` and `--data-dir` and their
     *  values are taken by meltybase, and `--help` is answered from `help` without calling
     *  the plugin). Runs once per process, after `init` returned MB_OK and before `shutdown`,
     *  on a thread of the kernel's blocking pool; it may block for as long as the command
     *  takes. Returns the process exit status: 0 success, 1 failure (say why on write_err),
     *  2 usage error. */
    int (*cli_run)(const mb_host_cli_context *context, const char *command, int argc, const char *const *argv);
    /** Optional. Reports the plugin's health (for the Studio's overview, /v1/hub/plugins and
     *  `meltybase doctor`): calls `sink` once, before returning, with a JSON object
     *  {"status":"ok"|"degraded"|"failing","message":"..."} (message optional, one line) and
     *  returns MB_OK; or returns another status with a message in `error` (reported as
     *  "failing"). Runs on a thread of the kernel's blocking pool, any time after `init`,
     *  possibly concurrently with requests; may block briefly (a database ping). The kernel
     *  waits at most 2 seconds, then reports "failing: health check timed out" and leaves
     *  the call to finish on its own. NULL: health "not reported". */
    mb_status (*health)(mb_bytes_sink sink, void *sink_context, mb_host_error_buffer error);

    /* ---- ABI 1.7 ---- */

    /** Optional. NULL-terminated list of the plugin's route prefixes (route_prefix or
     *  extra_route_prefixes) whose HTTP requests stream: the body is read with
     *  host->request_body_read (mb_host_request.body_streamed is set) and the answer may be
     *  streamed with respond_start, respond_write and respond_end (plain `respond` works too).
     *  The kernel's body_limit_bytes still bounds the whole body. [kernel]
     *  request_timeout_seconds does not apply to these requests: the plugin bounds their
     *  time itself (a client that goes away still cancels them). Immortal. */
    const char *const *streaming_route_prefixes;
} mb_plugin_descriptor;

/** Signature of the entry function. */
typedef const mb_plugin_descriptor *(*mb_plugin_entry_fn)(void);

#ifdef __cplusplus
}
#endif

#endif /* MELTYBASE_PLUGIN_H */

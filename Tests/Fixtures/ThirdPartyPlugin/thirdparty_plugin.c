/*
 * Fixture: a third-party plugin written the way an outside author would (plain C, only
 * meltybase_plugin.h), exercising ABI 1.5 end to end:
 *
 *   Route    GET /p/<portal>/acme-report/v1/summary   200 JSON
 *            {"plugin":"acme-report","portal":"<portal>","items":[{"name":..,"count":..},..]}
 *   Page     "report" (studio/pages/report.js, copied to acme_report_studio/ beside the
 *            library by scripts/build-c-plugins.sh): calls the route through context.api
 *            and renders the items.
 *   Command  meltybase acme-report record --note TEXT
 *            writes an audit entry (action "acme.note", target "cli", details {"note":TEXT})
 *            through host->audit and prints "recorded note: TEXT"; exit 0, 2 on bad usage,
 *            1 when the audit store refuses.
 *   Health   {"status":"degraded","message":"fixture reports degraded on purpose"}
 */
#define _POSIX_C_SOURCE 200809L
#include "meltybase_plugin.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct mb_plugin_instance {
    char portal[128];
};

static const mb_host_api *g_host;
static const mb_host_plugin *g_plugin;

static mb_status report_init(const mb_host_api *host, const mb_host_plugin *plugin, mb_host_bytes config_json,
                             mb_host_error_buffer error) {
    (void)config_json;
    (void)error;
    g_host = host;
    g_plugin = plugin;
    return MB_OK;
}

static mb_status report_instance_create(const mb_host_instance_context *context, mb_plugin_instance **instance_out,
                                        mb_host_error_buffer error) {
    mb_plugin_instance *instance = calloc(1, sizeof(*instance));
    if (instance == NULL) {
        snprintf(error.data, error.capacity, "acme-report: out of memory");
        return MB_ERR_INTERNAL;
    }
    size_t length = context->portal_name.len < sizeof(instance->portal) - 1 ? context->portal_name.len : sizeof(instance->portal) - 1;
    memcpy(instance->portal, context->portal_name.data, length);
    *instance_out = instance;
    return MB_OK;
}

static void report_instance_destroy(mb_plugin_instance *instance) { free(instance); }

static void respond_json(mb_request_token token, uint16_t status, const char *body, size_t length) {
    static const mb_plugin_header header = {
        .name = { (const uint8_t *)"content-type", 12 },
        .value = { (const uint8_t *)"application/json", 16 },
    };
    g_host->respond(token, status, &header, 1, (mb_plugin_bytes){ (const uint8_t *)body, length });
}

static void report_handle_request(mb_plugin_instance *instance, mb_request_token token, const mb_host_request *request) {
    static const char summary[] = "/v1/summary";
    if (request->path.len == sizeof(summary) - 1 && memcmp(request->path.data, summary, sizeof(summary) - 1) == 0) {
        char body[512];
        /* Portal names are [a-z0-9_-]: no JSON escaping needed. */
        int length = snprintf(body, sizeof(body),
                              "{\"plugin\":\"acme-report\",\"portal\":\"%s\",\"items\":["
                              "{\"name\":\"widgets\",\"count\":42},{\"name\":\"gadgets\",\"count\":7}]}",
                              instance->portal);
        respond_json(token, 200, body, (size_t)length);
        return;
    }
    static const char missing[] = "{\"code\":\"not_found\",\"message\":\"acme-report serves GET /v1/summary\"}";
    respond_json(token, 404, missing, sizeof(missing) - 1);
}

static const mb_studio_page g_report_page = {
    .struct_size = sizeof(mb_studio_page),
    .id = "report",
    .title = "Acme report",
    .module = "pages/report.js",
};
static const mb_studio_page *const g_pages[] = { &g_report_page, NULL };

static const mb_cli_command g_record = {
    .struct_size = sizeof(mb_cli_command),
    .name = "record",
    .summary = "Write a note into the kernel's audit log.",
    .help = "USAGE: meltybase acme-report record --note TEXT\n\n"
            "Appends an audit entry (action acme.note) with TEXT (letters, digits, spaces, '-', '_').",
};
static const mb_cli_command *const g_commands[] = { &g_record, NULL };

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

static int note_is_plain(const char *note) {
    if (*note == '\0' || strlen(note) > 200) return 0;
    for (const char *c = note; *c; c++) {
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || *c == ' ' || *c == '-' || *c == '_')) return 0;
    }
    return 1;
}

static int report_cli_run(const mb_host_cli_context *context, const char *command, int argc, const char *const *argv) {
    if (strcmp(command, "record") != 0) return 2;
    const char *note = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--note") == 0 && i + 1 < argc) {
            note = argv[++i];
        } else {
            cli_print(context, 1, "acme-report record: unexpected argument \"%s\"\n", argv[i]);
            return 2;
        }
    }
    if (note == NULL || !note_is_plain(note)) {
        cli_print(context, 1, "acme-report record: --note TEXT is required (letters, digits, spaces, '-', '_')\n");
        return 2;
    }
    char details[300];
    int details_length = snprintf(details, sizeof(details), "{\"note\":\"%s\"}", note);
    char message[256] = "";
    mb_host_error_buffer error = { message, sizeof(message) };
    static const char action[] = "acme.note";
    static const char target[] = "cli";
    mb_status status = context->host->audit(context->plugin, NULL, action, sizeof(action) - 1, target, sizeof(target) - 1,
                                            details, (size_t)details_length, error);
    if (status != MB_OK) {
        cli_print(context, 1, "acme-report record: audit refused: %s\n", message);
        return 1;
    }
    cli_print(context, 0, "recorded note: %s\n", note);
    return 0;
}

static mb_status report_health(mb_bytes_sink sink, void *sink_context, mb_host_error_buffer error) {
    (void)error;
    static const char report[] = "{\"status\":\"degraded\",\"message\":\"fixture reports degraded on purpose\"}";
    sink(sink_context, (mb_host_bytes){ (const uint8_t *)report, sizeof(report) - 1 });
    return MB_OK;
}

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = "c;ptr64",
    .name = "acme-report",
    .version = "2.0.0",
    .route_prefix = "acme-report",
    .init = report_init,
    .instance_create = report_instance_create,
    .instance_destroy = report_instance_destroy,
    .handle_request = report_handle_request,
    .studio_directory = "acme_report_studio",
    .studio_pages = g_pages,
    .cli_commands = g_commands,
    .cli_run = report_cli_run,
    .health = report_health,
};

__attribute__((visibility("default"))) const mb_plugin_descriptor *meltybase_plugin_entry(void);
__attribute__((visibility("default"))) const mb_plugin_descriptor *meltybase_plugin_entry(void) { return &g_descriptor; }

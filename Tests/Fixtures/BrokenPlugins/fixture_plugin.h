/*
 * Shared pieces of the broken-plugin fixtures: callbacks that are valid in every respect,
 * so that each fixture differs from a correct plugin in exactly the one way its file
 * describes. Include once per fixture; define FIXTURE_CUSTOM_INIT to supply your own init.
 */
#ifndef MELTYBASE_FIXTURE_PLUGIN_H
#define MELTYBASE_FIXTURE_PLUGIN_H

#include "meltybase_plugin.h"

#include <stdlib.h>

struct mb_plugin_instance { int unused; };

static const mb_host_api *g_host;

#ifndef FIXTURE_CUSTOM_INIT
static mb_status fixture_init(const mb_host_api *host, const mb_host_plugin *plugin,
                              mb_host_bytes config_json, mb_host_error_buffer error) {
    (void)plugin;
    (void)config_json;
    (void)error;
    g_host = host;
    return MB_OK;
}
#endif

static mb_status fixture_instance_create(const mb_host_instance_context *context,
                                         mb_plugin_instance **instance_out,
                                         mb_host_error_buffer error) {
    (void)context;
    (void)error;
    *instance_out = calloc(1, sizeof(mb_plugin_instance));
    return *instance_out != NULL ? MB_OK : MB_ERR_INTERNAL;
}

static void fixture_instance_destroy(mb_plugin_instance *instance) { free(instance); }

/* Answers 200 text/plain with the fixture's name. Unused where the fixture nulls it. */
__attribute__((unused))
static void fixture_handle_request(mb_plugin_instance *instance, mb_request_token token,
                                   const mb_host_request *request) {
    (void)instance;
    (void)request;
    static const char body[] = "fixture";
    static const mb_plugin_header header = {
        .name = { (const uint8_t *)"content-type", 12 },
        .value = { (const uint8_t *)"text/plain", 10 },
    };
    g_host->respond(token, 200, &header, 1,
                    (mb_plugin_bytes){ (const uint8_t *)body, sizeof(body) - 1 });
}

/* Exports `descriptor` under the entry symbol name `symbol`. */
#define FIXTURE_EXPORT(symbol, descriptor)                                   \
    __attribute__((visibility("default"))) const mb_plugin_descriptor *symbol(void); \
    __attribute__((visibility("default"))) const mb_plugin_descriptor *symbol(void) { \
        return &(descriptor);                                                \
    }

#define FIXTURE_SIGNATURE (sizeof(void *) == 8 ? "c;ptr64" : "c;ptr32")

#endif

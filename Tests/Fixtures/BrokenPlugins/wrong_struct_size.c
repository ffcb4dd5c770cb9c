/*
 * Broken plugin fixture: the descriptor claims struct_size = 8, far too small to contain
 * even abi_major and the required callbacks. The kernel must refuse it without reading any
 * field beyond the first 8 bytes.
 */
#include "meltybase_plugin.h"

#include <stdlib.h>

struct mb_plugin_instance { int unused; };

static const mb_host_api *g_host;

static mb_status fixture_init(const mb_host_api *host, const mb_host_plugin *plugin,
                              mb_host_bytes config_json, mb_host_error_buffer error) {
    (void)plugin;
    (void)config_json;
    (void)error;
    g_host = host;
    return MB_OK;
}

static mb_status fixture_instance_create(const mb_host_instance_context *context,
                                         mb_plugin_instance **instance_out,
                                         mb_host_error_buffer error) {
    (void)context;
    (void)error;
    *instance_out = calloc(1, sizeof(mb_plugin_instance));
    return *instance_out != NULL ? MB_OK : MB_ERR_INTERNAL;
}

static void fixture_instance_destroy(mb_plugin_instance *instance) { free(instance); }

static void fixture_handle_request(mb_plugin_instance *instance, mb_request_token token,
                                   const mb_host_request *request) {
    (void)instance;
    (void)request;
    static const char body[] = "small struct";
    static const mb_plugin_header header = {
        .name = { (const uint8_t *)"content-type", 12 },
        .value = { (const uint8_t *)"text/plain", 10 },
    };
    g_host->respond(token, 200, &header, 1,
                    (mb_plugin_bytes){ (const uint8_t *)body, sizeof(body) - 1 });
}

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = 8, /* deliberately too small */
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = sizeof(void *) == 8 ? "c;ptr64" : "c;ptr32",
    .name = "broken-small-struct",
    .version = "0.0.1",
    .route_prefix = "broken-small-struct",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

__attribute__((visibility("default")))
const mb_plugin_descriptor *meltybase_plugin_entry(void);

__attribute__((visibility("default")))
const mb_plugin_descriptor *meltybase_plugin_entry(void) {
    return &g_descriptor;
}

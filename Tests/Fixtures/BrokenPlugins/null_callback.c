/*
 * Broken plugin fixture: the required handle_request callback is NULL. Everything else is
 * valid. The kernel must refuse the plugin at load time instead of crashing on the first
 * request.
 */
#include "meltybase_plugin.h"

#include <stdlib.h>

struct mb_plugin_instance { int unused; };

static mb_status fixture_init(const mb_host_api *host, const mb_host_plugin *plugin,
                              mb_host_bytes config_json, mb_host_error_buffer error) {
    (void)plugin;
    (void)config_json;
    (void)error;
    (void)host;
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

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = sizeof(void *) == 8 ? "c;ptr64" : "c;ptr32",
    .name = "broken-null-callback",
    .version = "0.0.1",
    .route_prefix = "broken-null-callback",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = NULL, /* deliberately missing */
};

__attribute__((visibility("default")))
const mb_plugin_descriptor *meltybase_plugin_entry(void);

__attribute__((visibility("default")))
const mb_plugin_descriptor *meltybase_plugin_entry(void) {
    return &g_descriptor;
}

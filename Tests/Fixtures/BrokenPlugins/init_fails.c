/*
 * Broken plugin fixture: valid in every respect, but `init` always fails with
 * MB_ERR_UNAVAILABLE and a message in the error buffer. The kernel must refuse the plugin
 * and surface the message.
 */
#define FIXTURE_CUSTOM_INIT
#include "fixture_plugin.h"

#include <stdio.h>

static mb_status fixture_init(const mb_host_api *host, const mb_host_plugin *plugin,
                              mb_host_bytes config_json, mb_host_error_buffer error) {
    (void)plugin;
    (void)config_json;
    g_host = host;
    if (error.data != NULL && error.capacity > 0) {
        snprintf(error.data, error.capacity, "%s",
                 "cannot reach the licensing oracle (deliberate failure)");
    }
    return MB_ERR_UNAVAILABLE; /* deliberate */
}

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-init-fails",
    .version = "0.0.1",
    .route_prefix = "broken-init-fails",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

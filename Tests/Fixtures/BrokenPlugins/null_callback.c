/*
 * Broken plugin fixture: the required handle_request callback is NULL. Everything else is
 * valid. The kernel must refuse the plugin at load time instead of crashing on the first
 * request.
 */
#include "fixture_plugin.h"

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-null-callback",
    .version = "0.0.1",
    .route_prefix = "broken-null-callback",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = NULL /* deliberately missing */,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

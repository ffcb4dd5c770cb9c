/*
 * Broken plugin fixture: an ABI 1.5 studio_directory that climbs out of the plugin's folder
 * with "..". The kernel must refuse the plugin before reading anything there.
 */
#include "fixture_plugin.h"

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-studio-escape",
    .version = "0.0.1",
    .route_prefix = "broken-studio-escape",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
    .studio_directory = "../../etc",
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

/*
 * Broken plugin fixture: the descriptor claims struct_size = 8, far too small to contain
 * even abi_major and the required callbacks. The kernel must refuse it without reading any
 * field beyond the first 8 bytes.
 */
#include "fixture_plugin.h"

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = 8 /* deliberately too small */,
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-small-struct",
    .version = "0.0.1",
    .route_prefix = "broken-small-struct",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

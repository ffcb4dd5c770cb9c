/*
 * Broken plugin fixture: declares an ABI major version the kernel does not speak
 * (MB_ABI_MAJOR + 1). Everything else is valid. The kernel must refuse it before
 * calling any callback.
 */
#include "fixture_plugin.h"

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR + 1 /* deliberately wrong */,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-wrong-major",
    .version = "0.0.1",
    .route_prefix = "broken-wrong-major",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

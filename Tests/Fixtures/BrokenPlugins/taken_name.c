/*
 * Fixture: a perfectly valid plugin whose name, "echo-c", is already used by the example
 * plugin Plugins/Examples/EchoC (its route prefix, "echo-c-dup", is distinct). Loaded next
 * to libecho_c.so, the kernel must refuse the second plugin with that name.
 */
#include "fixture_plugin.h"

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "echo-c", /* taken by the example plugin */
    .version = "0.0.1",
    .route_prefix = "echo-c-dup",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

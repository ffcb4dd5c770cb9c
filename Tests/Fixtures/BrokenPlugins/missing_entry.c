/*
 * Broken plugin fixture: a complete, valid descriptor, but exported under the wrong
 * symbol name (meltybase_plugin_entry_v0). There is no meltybase_plugin_entry, so dlsym
 * fails and the kernel must report the missing entry symbol.
 */
#include "fixture_plugin.h"

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-missing-entry",
    .version = "0.0.1",
    .route_prefix = "broken-missing-entry",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

/* Deliberately NOT named meltybase_plugin_entry. */
FIXTURE_EXPORT(meltybase_plugin_entry_v0, g_descriptor)

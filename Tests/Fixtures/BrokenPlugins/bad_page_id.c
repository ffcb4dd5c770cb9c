/*
 * Broken plugin fixture: an ABI 1.5 Studio page whose id is not [a-z0-9_-]. The kernel must
 * refuse the plugin naming studio_pages[0].id and the value found.
 */
#include "fixture_plugin.h"

static const mb_studio_page g_page = {
    .struct_size = sizeof(mb_studio_page),
    .id = "Bad Page",
    .title = "Bad page",
    .module = "page.js",
};
static const mb_studio_page *const g_pages[] = { &g_page, NULL };

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "broken-page-id",
    .version = "0.0.1",
    .route_prefix = "broken-page-id",
    .init = fixture_init,
    .instance_create = fixture_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
    .studio_pages = g_pages,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

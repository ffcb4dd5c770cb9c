/*
 * Slow plugin fixture (not broken): `instance_create` takes 3 seconds, as one that opens
 * connections or loads a model might. The kernel runs it on its blocking pool, so requests
 * to other plugins and portals keep being answered meanwhile.
 */
#define FIXTURE_CUSTOM_INIT
#include "fixture_plugin.h"

#include <time.h>

static mb_status fixture_init(const mb_host_api *host, const mb_host_plugin *plugin,
                              mb_host_bytes config_json, mb_host_error_buffer error) {
    (void)plugin;
    (void)config_json;
    (void)error;
    g_host = host;
    return MB_OK;
}

static mb_status slow_instance_create(const mb_host_instance_context *context,
                                      mb_plugin_instance **instance_out,
                                      mb_host_error_buffer error) {
    struct timespec pause = { .tv_sec = 3, .tv_nsec = 0 };
    while (nanosleep(&pause, &pause) != 0) {
    }
    return fixture_instance_create(context, instance_out, error);
}

static const mb_plugin_descriptor g_descriptor = {
    .struct_size = sizeof(mb_plugin_descriptor),
    .abi_major = MB_ABI_MAJOR,
    .abi_minor = MB_ABI_MINOR,
    .build_signature = FIXTURE_SIGNATURE,
    .name = "slow-create",
    .version = "0.0.1",
    .route_prefix = "slow-create",
    .init = fixture_init,
    .instance_create = slow_instance_create,
    .instance_destroy = fixture_instance_destroy,
    .handle_request = fixture_handle_request,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

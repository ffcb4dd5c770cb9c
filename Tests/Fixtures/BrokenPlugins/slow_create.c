/*
 * Slow plugin fixture (not broken): `instance_create` takes 3 seconds, as one that opens
 * connections or loads a model might. The kernel runs it on its blocking pool, so requests
 * to other plugins and portals keep being answered meanwhile. Every request is answered
 * with the names of the threads `init` and the last `instance_create` ran on, as JSON
 * ({"init":"TP-#0","create":"TP-#1"}), so tests can see where the kernel called them.
 */
#define _GNU_SOURCE
#define FIXTURE_CUSTOM_INIT
#include "fixture_plugin.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static pthread_mutex_t g_names_lock = PTHREAD_MUTEX_INITIALIZER;
static char g_init_thread[32];
static char g_create_thread[32];

static void record_thread(char *into) {
    char name[32] = { 0 };
    pthread_getname_np(pthread_self(), name, sizeof(name));
    pthread_mutex_lock(&g_names_lock);
    memcpy(into, name, sizeof(name));
    pthread_mutex_unlock(&g_names_lock);
}

static mb_status fixture_init(const mb_host_api *host, const mb_host_plugin *plugin,
                              mb_host_bytes config_json, mb_host_error_buffer error) {
    (void)plugin;
    (void)config_json;
    (void)error;
    g_host = host;
    record_thread(g_init_thread);
    return MB_OK;
}

static mb_status slow_instance_create(const mb_host_instance_context *context,
                                      mb_plugin_instance **instance_out,
                                      mb_host_error_buffer error) {
    record_thread(g_create_thread);
    struct timespec pause = { .tv_sec = 3, .tv_nsec = 0 };
    while (nanosleep(&pause, &pause) != 0) {
    }
    return fixture_instance_create(context, instance_out, error);
}

static void slow_handle_request(mb_plugin_instance *instance, mb_request_token token,
                                const mb_host_request *request) {
    (void)instance;
    (void)request;
    char body[128];
    pthread_mutex_lock(&g_names_lock);
    int length = snprintf(body, sizeof(body), "{\"init\":\"%s\",\"create\":\"%s\"}", g_init_thread, g_create_thread);
    pthread_mutex_unlock(&g_names_lock);
    static const mb_plugin_header header = {
        .name = { (const uint8_t *)"content-type", 12 },
        .value = { (const uint8_t *)"application/json", 16 },
    };
    g_host->respond(token, 200, &header, 1, (mb_plugin_bytes){ (const uint8_t *)body, (size_t)length });
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
    .handle_request = slow_handle_request,
};

FIXTURE_EXPORT(meltybase_plugin_entry, g_descriptor)

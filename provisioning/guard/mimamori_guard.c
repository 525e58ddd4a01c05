/*
 * mimamori_guard: a Mosquitto 2.0 plugin that holds every device to the MQTT contract's
 * limits before a message is stored or queued (MOSQ_EVT_MESSAGE):
 *
 *  - a size limit per channel (mimamori/v1/<dev>/<channel>/...): a device's state, birth,
 *    telemetry, replies and job states are small; events carry a snapshot at most; only a
 *    kiosk's stills are large;
 *  - retain only on the channels the contract retains (state, birth, twin, call): a retained
 *    flag anywhere else is cleared, so no device can pile retained messages on the broker;
 *  - a byte budget per device (token bucket: a burst that covers a full outbox drain after
 *    an outage, then a sustained rate far above normal use); live views are not counted
 *    (they are not queued for anyone and flow only during a call).
 *
 * Clients named in `exempt` (the hub and the fleet administrator, on their own listener)
 * pass untouched. Everything is configured by `plugin_opt_*` lines that
 * `mimamori provision` generates from edge/contract.py; see provisioning/guard.py.
 * A refused message is answered "not authorised" (QoS 1) and logged once per device per
 * minute.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define MAX_CHANNELS 32
#define MAX_NAMES 16
#define TABLE_SIZE 65536 /* devices tracked for the byte budget (open addressing) */

struct channel_rule {
	char name[32];
	uint32_t limit;
	bool retain;
	bool budget;
};

struct bucket {
	char *user;
	double tokens;
	double updated;
	double warned;
};

static mosquitto_plugin_id_t *plg_id;
static char root[64] = "mimamori/v1";
static struct channel_rule channels[MAX_CHANNELS];
static int channel_count;
static char exempt[MAX_NAMES][64];
static int exempt_count;
static double rate_bytes = 32768.0;
static double burst_bytes = 100663296.0;
static struct bucket *table;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct channel_rule *rule_for(const char *name, size_t len)
{
	for(int i = 0; i < channel_count; i++){
		if(strlen(channels[i].name) == len && !strncmp(channels[i].name, name, len)){
			return &channels[i];
		}
	}
	return NULL;
}

static struct channel_rule *rule_add(const char *name)
{
	struct channel_rule *r = rule_for(name, strlen(name));
	if(r) return r;
	if(channel_count == MAX_CHANNELS || strlen(name) >= sizeof(channels[0].name)) return NULL;
	r = &channels[channel_count++];
	memset(r, 0, sizeof(*r));
	strcpy(r->name, name);
	r->budget = true;
	return r;
}

/* "a b c" -> calls fn for each word */
static void each_word(const char *value, void (*fn)(const char *))
{
	char buf[512];
	snprintf(buf, sizeof(buf), "%s", value);
	for(char *save = NULL, *w = strtok_r(buf, " ,", &save); w; w = strtok_r(NULL, " ,", &save)){
		fn(w);
	}
}

static void add_exempt(const char *w)
{
	if(exempt_count < MAX_NAMES && strlen(w) < sizeof(exempt[0])){
		strcpy(exempt[exempt_count++], w);
	}
}

static void add_retain(const char *w)
{
	struct channel_rule *r = rule_add(w);
	if(r) r->retain = true;
}

static void add_unbudgeted(const char *w)
{
	struct channel_rule *r = rule_add(w);
	if(r) r->budget = false;
}

static bool is_exempt(const char *user)
{
	for(int i = 0; i < exempt_count; i++){
		if(!strcmp(exempt[i], user)) return true;
	}
	return false;
}

static uint32_t hash(const char *s)
{
	uint32_t h = 2166136261u;
	for(; *s; s++){
		h = (h ^ (uint8_t)*s) * 16777619u;
	}
	return h;
}

static struct bucket *bucket_for(const char *user, double now)
{
	uint32_t i = hash(user) % TABLE_SIZE;
	for(uint32_t n = 0; n < TABLE_SIZE; n++, i = (i + 1) % TABLE_SIZE){
		if(table[i].user == NULL){
			table[i].user = strdup(user);
			if(table[i].user == NULL) return NULL;
			table[i].tokens = burst_bytes;
			table[i].updated = now;
			table[i].warned = -1e9;
			return &table[i];
		}
		if(!strcmp(table[i].user, user)) return &table[i];
	}
	return NULL; /* table full: no budget kept for this device */
}

static int refuse(struct bucket *b, const char *user, const char *topic, const char *why,
		double now)
{
	if(b == NULL || now - b->warned > 60.0){
		mosquitto_log_printf(MOSQ_LOG_WARNING, "mimamori_guard: refused %s from %s: %s",
				topic, user, why);
		if(b) b->warned = now;
	}
	return MOSQ_ERR_ACL_DENIED;
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	const char *user = mosquitto_client_username(ed->client);
	size_t rlen = strlen(root);
	(void)event;
	(void)userdata;

	if(user && is_exempt(user)) return MOSQ_ERR_SUCCESS;
	if(user == NULL) return MOSQ_ERR_ACL_DENIED;

	double now = now_s();
	struct bucket *b = bucket_for(user, now);
	const char *t = ed->topic;
	if(strncmp(t, root, rlen) || t[rlen] != '/'){
		return refuse(b, user, t, "outside the contract's tree", now);
	}
	const char *dev = t + rlen + 1;
	const char *slash = strchr(dev, '/');
	if(slash == NULL) return refuse(b, user, t, "no channel", now);
	const char *chan = slash + 1;
	size_t clen = strcspn(chan, "/");
	struct channel_rule *r = rule_for(chan, clen);
	if(r == NULL) return refuse(b, user, t, "unknown channel", now);

	if(r->limit && ed->payloadlen > r->limit){
		char why[96];
		snprintf(why, sizeof(why), "%u bytes, the channel takes at most %u", ed->payloadlen,
				r->limit);
		return refuse(b, user, t, why, now);
	}
	if(ed->retain && !r->retain){
		ed->retain = false; /* the contract does not retain this channel */
	}
	if(r->budget && b){
		b->tokens += (now - b->updated) * rate_bytes;
		if(b->tokens > burst_bytes) b->tokens = burst_bytes;
		b->updated = now;
		if(b->tokens < ed->payloadlen){
			return refuse(b, user, t, "over the device's byte budget", now);
		}
		b->tokens -= ed->payloadlen;
	}
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	for(int i = 0; i < supported_version_count; i++){
		if(supported_versions[i] == 5) return 5;
	}
	return -1;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
		struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	plg_id = identifier;
	for(int i = 0; i < opt_count; i++){
		const char *k = opts[i].key, *v = opts[i].value;
		if(!strcmp(k, "root")){
			snprintf(root, sizeof(root), "%s", v);
		}else if(!strcmp(k, "exempt")){
			each_word(v, add_exempt);
		}else if(!strcmp(k, "retain")){
			each_word(v, add_retain);
		}else if(!strcmp(k, "unbudgeted")){
			each_word(v, add_unbudgeted);
		}else if(!strcmp(k, "rate_bytes")){
			rate_bytes = atof(v);
		}else if(!strcmp(k, "burst_bytes")){
			burst_bytes = atof(v);
		}else if(!strncmp(k, "limit_", 6)){
			struct channel_rule *r = rule_add(k + 6);
			if(r == NULL){
				mosquitto_log_printf(MOSQ_LOG_ERR, "mimamori_guard: too many channels");
				return MOSQ_ERR_INVAL;
			}
			r->limit = (uint32_t)strtoul(v, NULL, 10);
		}
	}
	table = calloc(TABLE_SIZE, sizeof(*table));
	if(table == NULL) return MOSQ_ERR_NOMEM;
	mosquitto_log_printf(MOSQ_LOG_NOTICE,
			"mimamori_guard: %d channels, budget %.0f B/s, burst %.0f B", channel_count,
			rate_bytes, burst_bytes);
	return mosquitto_callback_register(plg_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plg_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	if(table){
		for(int i = 0; i < TABLE_SIZE; i++) free(table[i].user);
		free(table);
		table = NULL;
	}
	return MOSQ_ERR_SUCCESS;
}

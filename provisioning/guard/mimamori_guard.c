/*
 * mimamori_guard: a Mosquitto 2.0 plugin that holds every device to the MQTT contract's
 * limits before a message is stored or queued.
 *
 * At the access check of every write (MOSQ_EVT_ACL_CHECK, so a Last Will set at connect is
 * judged too; this plugin is loaded before the dynamic-security plugin and defers to it for
 * everything it does not refuse):
 *  - a size limit per channel (mimamori/v1/<dev>/<channel>/...): a device's state, birth,
 *    telemetry, replies and job states are small; events carry a snapshot at most; only a
 *    kiosk's stills are large;
 *  - retained only on the channels the contract retains (state, birth, twin, call): no device
 *    can pile retained messages on the broker under ever new topic names.
 * When the message is accepted (MOSQ_EVT_MESSAGE):
 *  - a byte budget per device (token bucket: a burst that covers a full outbox drain after
 *    an outage, then a sustained rate far above normal use); live views are not counted
 *    (they are not queued for anyone and flow only during a call).
 *
 * Clients named in `exempt` (the hub and the fleet administrator, on their own listener)
 * pass untouched. Everything is configured by `plugin_opt_*` lines that
 * `mimamori provision` generates from edge/contract.py; see provisioning/guard.py.
 * A refused message is answered "not authorised" (QoS 1), a refused Last Will refuses the
 * connection, and either is logged once per device per minute.
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

static struct bucket *bucket_of(struct mosquitto *client, const char **user, double now)
{
	*user = mosquitto_client_username(client);
	if(*user == NULL || is_exempt(*user)) return NULL;
	return bucket_for(*user, now);
}

/* the channel rule of a device topic, or NULL (and *why set) if it is outside the contract */
static struct channel_rule *rule_of_topic(const char *t, const char **why)
{
	size_t rlen = strlen(root);
	if(strncmp(t, root, rlen) || t[rlen] != '/'){
		*why = "outside the contract's tree";
		return NULL;
	}
	const char *slash = strchr(t + rlen + 1, '/');
	if(slash == NULL){
		*why = "no channel";
		return NULL;
	}
	const char *chan = slash + 1;
	struct channel_rule *r = rule_for(chan, strcspn(chan, "/"));
	if(r == NULL) *why = "unknown channel";
	return r;
}

static int on_acl_check(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_acl_check *ed = event_data;
	const char *user, *why = NULL;
	char text[96];
	(void)event;
	(void)userdata;

	if(ed->access != MOSQ_ACL_WRITE) return MOSQ_ERR_PLUGIN_DEFER;
	double now = now_s();
	struct bucket *b = bucket_of(ed->client, &user, now);
	if(user == NULL) return MOSQ_ERR_ACL_DENIED;
	if(is_exempt(user)) return MOSQ_ERR_PLUGIN_DEFER;

	struct channel_rule *r = rule_of_topic(ed->topic, &why);
	if(r == NULL) return refuse(b, user, ed->topic, why, now);
	if(r->limit && ed->payloadlen > r->limit){
		snprintf(text, sizeof(text), "%u bytes, the channel takes at most %u", ed->payloadlen,
				r->limit);
		return refuse(b, user, ed->topic, text, now);
	}
	if(ed->retain && !r->retain){
		return refuse(b, user, ed->topic, "retained on a channel the contract does not retain",
				now);
	}
	return MOSQ_ERR_PLUGIN_DEFER; /* the access rules decide the rest */
}

static int on_message(int event, void *event_data, void *userdata)
{
	struct mosquitto_evt_message *ed = event_data;
	const char *user, *why = NULL;
	(void)event;
	(void)userdata;

	double now = now_s();
	struct bucket *b = bucket_of(ed->client, &user, now);
	if(b == NULL) return MOSQ_ERR_SUCCESS; /* exempt, or no room to track it */
	struct channel_rule *r = rule_of_topic(ed->topic, &why);
	if(r && r->budget){
		b->tokens += (now - b->updated) * rate_bytes;
		if(b->tokens > burst_bytes) b->tokens = burst_bytes;
		b->updated = now;
		if(b->tokens < ed->payloadlen){
			return refuse(b, user, ed->topic, "over the device's byte budget", now);
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
	int rc = mosquitto_callback_register(plg_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL, NULL);
	if(rc != MOSQ_ERR_SUCCESS) return rc;
	return mosquitto_callback_register(plg_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int opt_count)
{
	(void)userdata;
	(void)opts;
	(void)opt_count;
	mosquitto_callback_unregister(plg_id, MOSQ_EVT_ACL_CHECK, on_acl_check, NULL);
	mosquitto_callback_unregister(plg_id, MOSQ_EVT_MESSAGE, on_message, NULL);
	if(table){
		for(int i = 0; i < TABLE_SIZE; i++) free(table[i].user);
		free(table);
		table = NULL;
	}
	return MOSQ_ERR_SUCCESS;
}

/*
 * provider.c — the provider interface: a table of a backend's functions
 * and its state, and the thin wrappers that call through it. The wrappers
 * hold the guarantees every backend relies on (an outcome starts empty, a
 * failed parse leaves nothing to free) so backends need not repeat them.
 */
#include "provider.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

struct provider {
	const struct provider_ops *ops;
	void *impl;
};

struct provider *
provider_new(const struct provider_ops *ops, void *impl)
{
	struct provider *p = xmalloc(sizeof(*p));

	p->ops = ops;
	p->impl = impl;
	return p;
}

void
provider_free(struct provider *p)
{
	if (p == NULL)
		return;
	p->ops->free(p->impl);
	free(p);
}

const char *
provider_name(const struct provider *p)
{
	return p->ops->name;
}

int
provider_submit(struct provider *p, const struct provider_task *t,
    provider_cb cb, void *arg)
{
	return p->ops->submit(p->impl, t, cb, arg);
}

int
provider_cancel(
    struct provider *p, const char *task_id, provider_cb cb, void *arg)
{
	return p->ops->cancel(p->impl, task_id, cb, arg);
}

int
provider_poll(
    struct provider *p, const char *task_id, provider_poll_cb cb, void *arg)
{
	return p->ops->poll(p->impl, task_id, cb, arg);
}

int
provider_parse_callback(struct provider *p, const char *body, size_t len,
    struct provider_outcome *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (errlen > 0)
		err[0] = '\0';
	if (p->ops->parse_callback(p->impl, body, len, out, err, errlen) == 0)
		return 0;
	provider_outcome_cleanup(out);
	return -1;
}

int
provider_tasks(struct provider *p, provider_cb cb, void *arg)
{
	return p->ops->tasks(p->impl, cb, arg);
}

int
provider_pending(const struct provider *p)
{
	return p->ops->pending(p->impl);
}

long
provider_result_code(const struct provider_result *res)
{
	if (res->code)
		return res->code;
	if (res->rc == PROVIDER_OK)
		return 0;
	return res->http_status ? res->http_status : PROVIDER_NO_ANSWER;
}

void
provider_outcome_cleanup(struct provider_outcome *o)
{
	if (o == NULL)
		return;
	free(o->task_id);
	json_decref(o->outputs);
	free(o->message);
	json_decref(o->cost);
	memset(o, 0, sizeof(*o));
}

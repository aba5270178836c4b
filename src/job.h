/*
 * job.h — the job record, its states and its JSON form (docs/api.md §3).
 */
#ifndef FILA_JOB_H
#define FILA_JOB_H

#include <stdint.h>
#include <jansson.h>

enum job_status {
	JOB_QUEUED,
	JOB_STARTING,
	JOB_RUNNING,
	JOB_COMPLETED,
	JOB_FAILED,
	JOB_CANCELLED,
};

/* Error codes a job can end with (docs/api.md §3). */
#define JOB_ERR_PROVIDER "provider_error"
#define JOB_ERR_REJECTED "provider_rejected"
#define JOB_ERR_TIMEOUT "timeout"
#define JOB_ERR_CANCELLED "cancelled"
#define JOB_ERR_SESSION "session_left"
#define JOB_ERR_ADMIN "admin"

/*
 * A job as stored. Strings and JSON are owned by the struct and released by
 * job_cleanup(); optional strings are NULL when absent; times are
 * milliseconds since the epoch, 0 when not yet set.
 */
struct job {
	int64_t seq; /* FIFO order: smaller was created first */
	char *id;
	char *user_id;
	char *tool;
	char *variant;
	enum job_status status;
	int64_t
	    position;   /* 1-based place among queued jobs; 0 when not queued */
	json_t *inputs; /* object */
	json_t *outputs; /* array of {url, type} */
	char *error_code;
	char *error_message;
	int64_t cost;
	int charged;
	int refunded;
	char *provider_task_id;
	char *webhook_token;
	char *session_id;
	char *idem_key;
	char *starter; /* the process carrying it to or from the provider */
	char *account; /* the provider account of its slot, once started */
	json_t *provider_cost; /* {coins, money, seconds}, or NULL */
	int64_t created_at;
	int64_t started_at;
	int64_t finished_at;
	int64_t updated_at;
	/* job_to_json()'s text as the store just wrote it (the job's event),
	 * so an answer need not build it again; NULL when not known. Whoever
	 * changes the job after sets it NULL (job_changed). */
	char *json;
};

/* Zero a job so that job_cleanup() on it is safe. */
void job_init(struct job *j);
/* Release everything a job owns and zero it again. */
void job_cleanup(struct job *j);
/* The job was changed after the store wrote it: its json is stale. */
void job_changed(struct job *j);

/* "queued", "starting", …; never NULL. */
const char *job_status_name(enum job_status s);
/* Parse a status name: 0, or -1 when unknown. */
int job_status_parse(const char *name, enum job_status *out);
/* 1 for completed, failed and cancelled. */
int job_status_terminal(enum job_status s);
/* 1 for queued, starting and running (what counts against a user). */
int job_status_active(enum job_status s);

/* The job as docs/api.md §3 shows it (new reference; no webhook token). */
json_t *job_to_json(const struct job *j);
/* The same as compact text, byte for byte what json_dumps(job_to_json(j),
 * JSON_COMPACT) writes, without building the object; the caller frees. */
char *job_to_text(const struct job *j);

/*
 * The job's JSON as the store keeps it (job_to_json() dumped compact) is
 * read and edited as text where that is all a hot path needs. The job's own
 * scalar members come before "inputs", and no string in them can hold an
 * unescaped quote, so the first "name": is the job's own.
 */
/* Where the value of the job's member name starts; NULL when absent. */
const char *job_text_member(const char *json, const char *name);
/* The same text with "position" set to pos (new string); NULL when the
 * text has no position member. */
char *job_text_at_position(const char *json, int64_t pos);

/* A growable array of jobs; job_list_cleanup() frees each and the array. */
struct job_list {
	struct job *v;
	size_t n, cap;
};
/* Append a zeroed job and return it. */
struct job *job_list_push(struct job_list *l);
void job_list_cleanup(struct job_list *l);
/* A JSON array of the jobs (new reference). */
json_t *job_list_to_json(const struct job_list *l);
/* The same with each job's account, as the admin views show them. */
json_t *job_list_to_admin_json(const struct job_list *l);

#endif

/*
 * store_io.c: the "projects" and "templates" sections of pgmarket import and
 * export.
 *
 *   "projects":  {"<project uuid>": {"user_id": "<uuid>", "name": ..., "type": ...,
 *                 "status": "active" | "archived", "codebase": {...},
 *                 "dependencies": [...], "environment": {...}, "deployment": {...},
 *                 "test_coverage": 81.5, "scores": {...}, "last_deployed_at": "..."}}
 *   "templates": {"<name>": {"category": ..., "files": {...} | [...],
 *                 "description": ..., "required_vars": [...], "optional_vars": {...},
 *                 "tech_stack": [...], "setup_minutes": 5, "complexity": ...,
 *                 "tags": [...]}}
 *
 * Only the library's calls are used (save_project, archive_project,
 * save_template and their readers); the server checks every value as it
 * checks any call, and a refused record is reported with its reason.
 */
#include "store_io.h"

#include <stdlib.h>
#include <string.h>

#include "importdoc.h"

#define MAX_LIST 10000

/* A member that must be a string, or NULL. */
static const char *
member_str(const json *o, const char *key)
{
	const json *v = json_get(o, key);

	return (v && v->type == JSON_STRING) ? v->text : NULL;
}

/*
 * A member that is absent (*out NULL, true), or of one of the two JSON
 * types given, as text in *out (the caller frees it); false otherwise.
 */
static int
member_json(const json *o, const char *key, json_type t1, json_type t2,
			char **out)
{
	const json *v = json_get(o, key);

	*out = NULL;
	if (v == NULL || v->type == JSON_NULL)
		return 1;
	if (v->type != t1 && v->type != t2)
		return 0;
	*out = json_to_text(v);
	return *out != NULL;
}

/*
 * A member that is absent (*out NULL) or an array of strings, as a
 * NULL-terminated list in *out (the caller frees the list, not the strings).
 */
static int
member_list(const json *o, const char *key, const char ***out)
{
	const json *v = json_get(o, key);
	size_t		i;

	*out = NULL;
	if (v == NULL || v->type == JSON_NULL)
		return 1;
	if (v->type != JSON_ARRAY || v->n > MAX_LIST)
		return 0;
	*out = calloc(v->n + 1, sizeof(char *));
	if (*out == NULL)
		return 0;
	for (i = 0; i < v->n; i++)
	{
		if (v->items[i]->type != JSON_STRING)
		{
			free(*out);
			*out = NULL;
			return 0;
		}
		(*out)[i] = v->items[i]->text;
	}
	return 1;
}

/* A number member (absent: *out NULL); false for anything else. */
static int
member_number(const json *o, const char *key, const char **out)
{
	const json *v = json_get(o, key);

	*out = NULL;
	if (v == NULL || v->type == JSON_NULL)
		return 1;
	if (v->type != JSON_NUMBER)
		return 0;
	*out = v->text;
	return 1;
}

/* The reason of a refused call, "message (SQLSTATE)". */
static void
reject_call(pgm_conn *conn, store_reject_fn reject, void *arg,
			const char *section, const char *record)
{
	char		why[1024];

	snprintf(why, sizeof(why), "%s (%s)", pgm_errmsg(conn), pgm_sqlstate(conn));
	reject(arg, section, record, why);
}

/*
 * The answer of looking a record up: 1 when it is there (counted present),
 * -1 when the server is gone, 0 when it is to be saved (an unknown user, say,
 * which the save then reports).
 */
static int
looked_up(pgm_status st, store_counts *n)
{
	if (st == PGM_OK)
	{
		n->present++;
		return 1;
	}
	return st == PGM_CONNECTION_ERROR ? -1 : 0;
}

/* The answer of saving a record: counted, rejected with its reason, or -1. */
static int
saved_as(pgm_conn *conn, pgm_status st, store_counts *n, store_reject_fn reject,
		 void *arg, const char *section, const char *record)
{
	if (st == PGM_OK)
		n->created++;
	else if (st == PGM_CONNECTION_ERROR)
		return -1;
	else
		reject_call(conn, reject, arg, section, record);
	return 0;
}

/* One project record; -1 when the server is gone. */
static int
import_project(pgm_conn *conn, const char *id, const json *rec,
			   store_reject_fn reject, void *arg, store_counts *n)
{
	const char *uid = member_str(rec, "user_id");
	const char *name = member_str(rec, "name");
	const char *type = member_str(rec, "type");
	const char *status = member_str(rec, "status");
	const char *deployed = member_str(rec, "last_deployed_at");
	pgm_project_options po = {0};
	char	   *codebase = NULL,
			   *env = NULL,
			   *deploy = NULL,
			   *scores = NULL;
	const char **deps = NULL;
	char		saved[PGM_UUID_LEN];
	pgm_result *r = NULL;
	pgm_status	st;
	int			rc = 0;

	if (rec->type != JSON_OBJECT || !is_uuid(id) || uid == NULL || !is_uuid(uid) ||
		name == NULL || type == NULL)
	{
		reject(arg, "projects", id, is_uuid(id) ?
			   "must be an object with user_id (a uuid), name and type (strings)" :
			   "malformed uuid");
		return 0;
	}
	if (status && strcmp(status, "active") != 0 && strcmp(status, "archived") != 0)
	{
		reject(arg, "projects", id, "status must be active or archived");
		return 0;
	}
	if (!member_json(rec, "codebase", JSON_OBJECT, JSON_OBJECT, &codebase) ||
		!member_json(rec, "environment", JSON_OBJECT, JSON_OBJECT, &env) ||
		!member_json(rec, "deployment", JSON_OBJECT, JSON_OBJECT, &deploy) ||
		!member_json(rec, "scores", JSON_OBJECT, JSON_OBJECT, &scores) ||
		!member_list(rec, "dependencies", &deps) ||
		!member_number(rec, "test_coverage", &po.test_coverage))
	{
		reject(arg, "projects", id, "codebase, environment, deployment and scores must be "
			   "objects, dependencies an array of strings, test_coverage a number");
		goto done;
	}
	st = pgm_get_project(conn, uid, id, &r);
	pgm_result_free(r);
	if ((rc = looked_up(st, n)) != 0)
	{
		rc = rc < 0 ? -1 : 0;
		goto done;
	}
	po.id = id;
	po.codebase = codebase;
	po.environment = env;
	po.deployment = deploy;
	po.scores = scores;
	po.dependencies = deps;
	po.last_deployed_at = deployed;
	st = pgm_save_project(conn, uid, name, type, &po, saved);
	if (st == PGM_OK && status && strcmp(status, "archived") == 0)
		st = pgm_archive_project(conn, uid, id);
	rc = saved_as(conn, st, n, reject, arg, "projects", id);
done:
	free(codebase);
	free(env);
	free(deploy);
	free(scores);
	free(deps);
	return rc;
}

/* One template record; -1 when the server is gone. */
static int
import_template(pgm_conn *conn, const char *name, const json *rec,
				store_reject_fn reject, void *arg, store_counts *n)
{
	pgm_template_options to = {0};
	const char *category = member_str(rec, "category");
	char	   *files = NULL,
			   *optional = NULL;
	const char **required = NULL,
			  **tags = NULL,
			  **stack = NULL;
	char		saved[PGM_UUID_LEN];
	pgm_result *r = NULL;
	pgm_status	st;
	int			rc = 0;

	if (rec->type != JSON_OBJECT || category == NULL ||
		!member_json(rec, "files", JSON_OBJECT, JSON_ARRAY, &files) || files == NULL ||
		!member_json(rec, "optional_vars", JSON_OBJECT, JSON_OBJECT, &optional) ||
		!member_list(rec, "required_vars", &required) ||
		!member_list(rec, "tags", &tags) ||
		!member_list(rec, "tech_stack", &stack) ||
		!member_number(rec, "setup_minutes", &to.setup_minutes))
	{
		reject(arg, "templates", name, "must be an object with category (a string) and files "
			   "(an object or array); required_vars, tags and tech_stack arrays of "
			   "strings, optional_vars an object, setup_minutes a number");
		goto done;
	}
	st = pgm_get_template(conn, name, &r);
	pgm_result_free(r);
	if ((rc = looked_up(st, n)) != 0)
	{
		rc = rc < 0 ? -1 : 0;
		goto done;
	}
	to.description = member_str(rec, "description");
	to.complexity = member_str(rec, "complexity");
	to.required_vars = required;
	to.tags = tags;
	to.tech_stack = stack;
	to.optional_vars = optional;
	st = pgm_save_template(conn, name, category, files, &to, saved);
	rc = saved_as(conn, st, n, reject, arg, "templates", name);
done:
	free(files);
	free(optional);
	free(required);
	free(tags);
	free(stack);
	return rc;
}

/* One record of a section: 0, or -1 when the connection is gone. */
typedef int (*import_fn) (pgm_conn *conn, const char *key, const json *rec,
						  store_reject_fn reject, void *arg, store_counts *n);

/*
 * Each record of the section NAME of doc (absent: none), an object of
 * MEMBERS: 0, or -1 when the connection is gone.
 */
static int
import_section(pgm_conn *conn, const json *doc, const char *name, const char *members,
			   import_fn fn, store_reject_fn reject, void *arg, store_counts *n)
{
	const json *s = json_get(doc, name);
	char		why[80];
	size_t		i;

	if (s && s->type != JSON_OBJECT)
	{
		snprintf(why, sizeof(why), "the section must be an object of %s", members);
		reject(arg, name, "", why);
		return 0;
	}
	for (i = 0; s && i < s->n; i++)
		if (fn(conn, s->keys[i], s->items[i], reject, arg, n) < 0)
			return -1;
	return 0;
}

int
store_import(pgm_conn *conn, const json *doc, store_reject_fn reject, void *arg,
			 store_counts *projects, store_counts *templates)
{

	/* templates first: a project may name one, never the other way round */
	if (import_section(conn, doc, "templates", "name: template", import_template,
					   reject, arg, templates) < 0 ||
		import_section(conn, doc, "projects", "id: project", import_project,
					   reject, arg, projects) < 0)
		return -1;
	return 0;
}

/*
 * A text[] literal as the server writes it ({a,"b c","d\"e"}, NULL for a
 * NULL element) as a JSON array.
 */
static void
write_text_array(FILE *f, const char *lit)
{
	const char *p = lit;
	char	   *elem = malloc(strlen(lit) + 1);
	int			first = 1;

	fputc('[', f);
	if (elem == NULL || *p != '{')
	{
		free(elem);
		fputc(']', f);
		return;
	}
	p++;
	while (*p && *p != '}')
	{
		size_t		n = 0;
		int			quoted = (*p == '"');

		if (quoted)
		{
			for (p++; *p && *p != '"'; p++)
			{
				if (*p == '\\' && p[1])
					p++;
				elem[n++] = *p;
			}
			if (*p == '"')
				p++;
		}
		else
			while (*p && *p != ',' && *p != '}')
				elem[n++] = *p++;
		elem[n] = '\0';
		if (!first)
			fputs(", ", f);
		first = 0;
		if (!quoted && strcmp(elem, "NULL") == 0)
			fputs("null", f);
		else
			json_write_string(f, elem);
		if (*p == ',')
			p++;
	}
	fputc(']', f);
	free(elem);
}

/*
 * A timestamptz as the server writes it under TimeZone UTC and DateStyle
 * ISO ("2026-01-02 03:04:05.123456+00") in the export's one format,
 * ISO 8601 in UTC ("2026-01-02T03:04:05.123456Z").
 */
static void
write_timestamp(FILE *f, const char *v)
{
	size_t		n = strlen(v);
	char	   *t;

	if (n < 22 || v[10] != ' ' || strcmp(v + n - 3, "+00") != 0 ||
		(t = malloc(n + 1)) == NULL)
	{
		json_write_string(f, v);
		return;
	}
	memcpy(t, v, n - 3);
	t[10] = 'T';
	t[n - 3] = 'Z';
	t[n - 2] = '\0';
	json_write_string(f, t);
	free(t);
}

/*
 * "name": value of a result column: JSON text as it is ('j', 'n'), a text
 * array ('a'), a timestamp ('t') or a string.
 */
static void
write_member(FILE *f, pgm_result *r, int row, const char *col, char kind)
{
	const char *v = pgm_result_value(r, row, col);

	fprintf(f, ", \"%s\": ", col);
	if (v == NULL)
		fputs("null", f);
	else if (kind == 'j' || kind == 'n')
		fputs(v, f);
	else if (kind == 'a')
		write_text_array(f, v);
	else if (kind == 't')
		write_timestamp(f, v);
	else
		json_write_string(f, v);
}

/* A member of an exported record: its column and its kind for write_member. */
typedef struct
{
	const char *col;
	char		kind;
} member_spec;

/* The members of a template and of a project, in the order they are written. */
static const member_spec template_members[] = {
	{"files", 'j'},
	{"description", 's'},
	{"required_vars", 'a'},
	{"optional_vars", 'j'},
	{"tech_stack", 'a'},
	{"setup_minutes", 'n'},
	{"complexity", 's'},
	{"tags", 'a'},
};

static const member_spec project_members[] = {
	{"name", 's'},
	{"type", 's'},
	{"status", 's'},
	{"codebase", 'j'},
	{"dependencies", 'a'},
	{"environment", 'j'},
	{"deployment", 'j'},
	{"test_coverage", 'n'},
	{"scores", 'j'},
	{"last_deployed_at", 't'},
	{"created_at", 't'},
};

static void
write_members(FILE *f, pgm_result *r, int row, const member_spec *m, size_t n)
{
	size_t		i;

	for (i = 0; i < n; i++)
		write_member(f, r, row, m[i].col, m[i].kind);
}

int
store_export(pgm_conn *conn, FILE *f, pgm_result *users)
{
	pgm_result *r = NULL;
	int			i,
				j,
				first = 1;

	/* timestamps in one format, whatever the role's settings say */
	if (pgm_exec(conn, "SELECT pg_catalog.set_config('TimeZone', 'UTC', false), "
				 "pg_catalog.set_config('DateStyle', 'ISO, YMD', false)",
				 0, NULL, &r) != PGM_OK)
		return -1;
	pgm_result_free(r);
	r = NULL;
	if (pgm_list_templates(conn, NULL, &r) != PGM_OK)
		return -1;
	fputs(",\n  \"templates\": {", f);
	for (j = 0; j < pgm_result_rows(r); j++)
	{
		fprintf(f, "%s\n    ", j ? "," : "");
		json_write_string(f, pgm_result_value(r, j, "name"));
		fputs(": {\"category\": ", f);
		json_write_string(f, pgm_result_value(r, j, "category"));
		write_members(f, r, j, template_members,
					  sizeof(template_members) / sizeof(template_members[0]));
		fputc('}', f);
	}
	pgm_result_free(r);
	fputs("\n  },\n  \"projects\": {", f);
	for (i = 0; i < pgm_result_rows(users); i++)
	{
		const char *uid = pgm_result_value(users, i, "id");
		char		before[64] = "";

		for (;;)
		{
			int			n;

			if (pgm_list_projects(conn, uid, NULL, 1000, before[0] ? before : NULL,
								  &r) != PGM_OK)
				return -1;
			n = pgm_result_rows(r);
			for (j = 0; j < n; j++)
			{
				fprintf(f, "%s\n    \"%s\": {\"user_id\": \"%s\"", first ? "" : ",",
						pgm_result_value(r, j, "id"), uid);
				first = 0;
				write_members(f, r, j, project_members,
							  sizeof(project_members) / sizeof(project_members[0]));
				fputc('}', f);
			}
			if (n > 0)
				snprintf(before, sizeof(before), "%s",
						 pgm_result_value(r, n - 1, "created_at"));
			pgm_result_free(r);
			if (n < 1000)
				break;
		}
	}
	fputs("\n  }", f);
	return 0;
}

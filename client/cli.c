/*
 * cli.c: the pgmarket command-line tool, on libpgmarket.
 *
 *   pgmarket [-d CONNINFO] [--actor UUID] COMMAND [ARGS]
 *
 * The connection comes from -d/--dbname (a libpq conninfo string or URI)
 * or the PG* environment.  Every failure prints what failed and the
 * server's message on stderr and exits non-zero.
 */
#include "pgmarket.h"
#include "importdoc.h"
#include "store_io.h"
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *usage_text =
"pgmarket: the command-line tool of pgmarket " PGM_VERSION_STRING "\n"
"\n"
"usage: pgmarket [-d CONNINFO] [--actor UUID] COMMAND [ARGS]\n"
"\n"
"  balance USER_ID                      the user's balance\n"
"  add-funds USER_ID AMOUNT [--key IDEMPOTENCY_KEY] [--note TEXT]\n"
"  charge USER_ID AMOUNT MODEL [--tokens N] [--key IDEMPOTENCY_KEY]\n"
"  keys list USER_ID                    platform API keys\n"
"  keys create USER_ID NAME [--scopes read,write] [--tier T] [--env live|test]\n"
"              [--limit AMOUNT --period day|month] [--expires TIMESTAMP]\n"
"  keys revoke USER_ID KEY_ID\n"
"  keys put USER_ID PROVIDER [--label L]   provider key, read from stdin, sealed\n"
"  keys providers USER_ID               provider keys (never the secret)\n"
"  keys revoke-provider USER_ID KEY_ID\n"
"  rotate-keys [--batch N]              re-encrypt under the newest master key\n"
"  verify [--anchor FILE]               verify_ledger and verify_audit; with FILE,\n"
"                                       check the chain against the anchor it\n"
"                                       holds, then advance it to the head\n"
"  health                               health() as JSON; exit 1 when not ok\n"
"  import FILE                          load a JSON document (see README)\n"
"  export [FILE] [--with-secrets]       write one\n"
"  demo                                 a throwaway cluster and a tour\n"
"\n"
"The connection: -d/--dbname CONNINFO, else PGHOST, PGPORT, PGDATABASE, ...\n";

static pgm_conn *conn;
static int	quiet;

/* ------------------------------------------------------------------------
 * Output helpers
 * ------------------------------------------------------------------------ */

static void
complain(const char *what)
{
	fprintf(stderr, "pgmarket: %s failed: %s", what, pgm_errmsg(conn));
	if (pgm_sqlstate(conn)[0])
		fprintf(stderr, " (%s, %s)", pgm_sqlstate(conn),
				pgm_status_name(pgm_last_status(conn)));
	fputc('\n', stderr);
	if (pgm_errdetail(conn)[0])
		fprintf(stderr, "DETAIL: %s\n", pgm_errdetail(conn));
	if (pgm_errhint(conn)[0])
		fprintf(stderr, "HINT: %s\n", pgm_errhint(conn));
}

static int
usage_error(const char *fmt,...)
{
	va_list		ap;

	fprintf(stderr, "pgmarket: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, "\nTry \"pgmarket --help\".\n");
	return 2;
}

/* A progress bar on a terminal, a line per tenth elsewhere. */
typedef struct
{
	const char *label;
	long		total;
	long		done;
	int			tty;
	int			last_tenth;
} progress;

static void
progress_start(progress *p, const char *label, long total)
{
	p->label = label;
	p->total = total;
	p->done = 0;
	p->tty = isatty(STDERR_FILENO);
	p->last_tenth = -1;
}

static void
progress_step(progress *p, long n)
{
	int			width = 30,
				fill;

	p->done += n;
	if (quiet)
		return;
	if (p->total <= 0)
	{
		if (p->tty)
			fprintf(stderr, "\r%s: %ld", p->label, p->done);
		return;
	}
	fill = (int) (p->done * width / p->total);
	if (fill > width)
		fill = width;
	if (p->tty)
		fprintf(stderr, "\r%s [%.*s%*s] %ld/%ld", p->label, fill,
				"##############################", width - fill, "", p->done, p->total);
	else
	{
		int			tenth = (int) (p->done * 10 / p->total);

		if (tenth != p->last_tenth)
		{
			fprintf(stderr, "%s: %ld/%ld\n", p->label, p->done, p->total);
			p->last_tenth = tenth;
		}
	}
}

static void
progress_end(progress *p)
{
	if (p->tty && !quiet)
		fputc('\n', stderr);
}

/* --name value options after the positional arguments. */
static const char *
opt(int argc, char **argv, const char *name)
{
	int			i;

	for (i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0 && i + 1 < argc)
			return argv[i + 1];
	return NULL;
}

static int
has_flag(int argc, char **argv, const char *name)
{
	int			i;

	for (i = 0; i < argc; i++)
		if (strcmp(argv[i], name) == 0)
			return 1;
	return 0;
}

/*
 * A whole-number option from min to max (dflt when absent) into *out;
 * 0, or 2 after a usage error for a missing value, a malformed number or
 * one out of range (strtoll's overflow included, never clamped).
 */
static int
int_opt(int argc, char **argv, const char *name, long long min, long long max,
		long long dflt, long long *out)
{
	const char *s = opt(argc, argv, name);
	char	   *end;
	long long	v;

	*out = dflt;
	if (s == NULL)
		return has_flag(argc, argv, name) ? usage_error("%s needs a value", name) : 0;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (end == s || *end != '\0' || errno == ERANGE || v < min || v > max)
		return usage_error("%s must be a whole number from %lld to %lld, not \"%s\"",
						   name, min, max, s);
	*out = v;
	return 0;
}

/* Positional arguments: those not an option or an option's value. */
static int
positional(int argc, char **argv, char **out, int max)
{
	int			i,
				n = 0;

	for (i = 0; i < argc; i++)
	{
		if (strncmp(argv[i], "--", 2) == 0)
		{
			if (strcmp(argv[i], "--with-secrets") != 0)
				i++;
			continue;
		}
		if (n < max)
			out[n] = argv[i];
		n++;
	}
	return n;
}

static void
print_ledger_result(const pgm_ledger_result *r)
{
	printf("entry %lld: %s of %s, available %s%s\n", (long long) r->entry_id,
		   r->kind, r->amount, r->available_balance, r->replayed ? " (replayed)" : "");
}

/* ------------------------------------------------------------------------
 * balance, add-funds, charge
 * ------------------------------------------------------------------------ */

static int
cmd_balance(int argc, char **argv)
{
	char	   *a[1];
	pgm_balance b;

	if (positional(argc, argv, a, 1) != 1)
		return usage_error("balance needs USER_ID");
	if (pgm_get_balance(conn, a[0], &b) != PGM_OK)
	{
		complain("balance");
		return 1;
	}
	printf("user       %s\ntotal      %s\nspent      %s\nreserved   %s\navailable  %s\n",
		   b.user_id, b.total_balance, b.spent_balance, b.reserved_balance,
		   b.available_balance);
	return 0;
}

static int
cmd_add_funds(int argc, char **argv)
{
	char	   *a[2];
	pgm_ledger_result r;

	if (positional(argc, argv, a, 2) != 2)
		return usage_error("add-funds needs USER_ID AMOUNT");
	if (pgm_add_funds(conn, a[0], a[1], opt(argc, argv, "--key"),
					  opt(argc, argv, "--note"), &r) != PGM_OK)
	{
		complain("add-funds");
		return 1;
	}
	print_ledger_result(&r);
	return 0;
}

static int
cmd_charge(int argc, char **argv)
{
	char	   *a[3];
	long long	tokens;
	pgm_ledger_result r;

	if (positional(argc, argv, a, 3) != 3)
		return usage_error("charge needs USER_ID AMOUNT MODEL");
	if (int_opt(argc, argv, "--tokens", 0, INT64_MAX, 0, &tokens) != 0)
		return 2;
	if (pgm_deduct_balance(conn, a[0], a[1], a[2], (int64_t) tokens,
						   opt(argc, argv, "--key"), &r) != PGM_OK)
	{
		complain("charge");
		return 1;
	}
	print_ledger_result(&r);
	return 0;
}

/* ------------------------------------------------------------------------
 * keys
 * ------------------------------------------------------------------------ */

/* "read,write" -> NULL-terminated list in one allocation. */
static char **
split_list(const char *s)
{
	size_t		n = 2,
				len = strlen(s),
				i,
				k = 0;
	char	  **list;
	char	   *copy;

	for (i = 0; i < len; i++)
		n += s[i] == ',';
	list = malloc(n * sizeof(char *) + len + 1);
	if (list == NULL)
		return NULL;
	copy = (char *) (list + n);
	memcpy(copy, s, len + 1);
	list[k++] = copy;
	for (i = 0; i < len; i++)
		if (copy[i] == ',')
		{
			copy[i] = '\0';
			list[k++] = copy + i + 1;
		}
	list[k] = NULL;
	return list;
}

static int
cmd_keys(int argc, char **argv)
{
	char	   *a[4];
	int			n;
	const char *sub;

	if (argc < 1)
		return usage_error("keys needs a subcommand: list, create, revoke, put, providers, revoke-provider");
	sub = argv[0];
	argc--;
	argv++;
	n = positional(argc, argv, a, 4);

	if (strcmp(sub, "list") == 0)
	{
		pgm_result *r = NULL;
		int			i;

		if (n != 1)
			return usage_error("keys list needs USER_ID");
		if (pgm_list_api_keys(conn, a[0], &r) != PGM_OK)
		{
			complain("keys list");
			return 1;
		}
		printf("%-36s  %-24s  %-16s  %-12s  %-10s  %s\n", "key_id", "prefix", "name",
			   "scopes", "spent", "state");
		for (i = 0; i < pgm_result_rows(r); i++)
		{
			const char *revoked = pgm_result_value(r, i, "revoked_at");

			printf("%-36s  %-24s  %-16s  %-12s  %-10s  %s\n",
				   pgm_result_value(r, i, "key_id"), pgm_result_value(r, i, "prefix"),
				   pgm_result_value(r, i, "name"), pgm_result_value(r, i, "scopes"),
				   pgm_result_value(r, i, "total_spent"), revoked ? "revoked" : "active");
		}
		pgm_result_free(r);
		return 0;
	}
	if (strcmp(sub, "create") == 0)
	{
		pgm_api_key_options o = {0};
		char	  **scopes = NULL;
		char		key_id[PGM_UUID_LEN];
		char	   *key = NULL;
		const char *s = opt(argc, argv, "--scopes");
		pgm_status	st;

		if (n != 2)
			return usage_error("keys create needs USER_ID NAME");
		if (s && (scopes = split_list(s)) == NULL)
			return 1;
		o.scopes = (const char *const *) scopes;
		o.rate_limit_tier = opt(argc, argv, "--tier");
		o.environment = opt(argc, argv, "--env");
		o.spend_limit = opt(argc, argv, "--limit");
		o.spend_period = opt(argc, argv, "--period");
		o.expires_at = opt(argc, argv, "--expires");
		st = pgm_create_api_key(conn, a[0], a[1], &o, key_id, &key);
		free(scopes);
		if (st != PGM_OK)
		{
			complain("keys create");
			return 1;
		}
		printf("key_id  %s\napi_key %s\n", key_id, key);
		fprintf(stderr, "pgmarket: the raw key is shown once; it is not stored\n");
		pgm_free_secret(key);
		return 0;
	}
	if (strcmp(sub, "revoke") == 0 || strcmp(sub, "revoke-provider") == 0)
	{
		int			revoked = 0;
		pgm_status	st;

		if (n != 2)
			return usage_error("keys %s needs USER_ID KEY_ID", sub);
		st = sub[6] == '\0' ? pgm_revoke_api_key(conn, a[0], a[1], &revoked)
			: pgm_revoke_provider_key(conn, a[0], a[1], &revoked);
		if (st != PGM_OK)
		{
			complain("keys revoke");
			return 1;
		}
		printf("%s\n", revoked ? "revoked" : "was revoked already");
		return 0;
	}
	if (strcmp(sub, "put") == 0)
	{
		char		secret[4096];
		char		key_id[PGM_UUID_LEN];
		size_t		len;
		pgm_status	st;

		if (n != 2)
			return usage_error("keys put needs USER_ID PROVIDER (the secret on stdin)");
		if (isatty(STDIN_FILENO))
			fprintf(stderr, "secret for %s: ", a[1]);
		if (fgets(secret, sizeof(secret), stdin) == NULL)
		{
			fprintf(stderr, "pgmarket: keys put: no secret on stdin\n");
			return 1;
		}
		len = strcspn(secret, "\r\n");
		secret[len] = '\0';
		st = pgm_put_provider_key(conn, a[0], a[1], secret, opt(argc, argv, "--label"), key_id);
		memset(secret, 0, sizeof(secret));
		if (st != PGM_OK)
		{
			complain("keys put");
			return 1;
		}
		printf("key_id %s\n", key_id);
		return 0;
	}
	if (strcmp(sub, "providers") == 0)
	{
		pgm_result *r = NULL;
		pgm_provider_key_info k;
		int			i;

		if (n != 1)
			return usage_error("keys providers needs USER_ID");
		if (pgm_list_provider_keys(conn, a[0], &r) != PGM_OK)
		{
			complain("keys providers");
			return 1;
		}
		printf("%-36s  %-16s  %-6s  %-3s  %s\n", "key_id", "provider", "hint", "v", "state");
		for (i = 0; i < pgm_result_rows(r); i++)
			if (pgm_result_provider_key(r, i, &k) == PGM_OK)
				printf("%-36s  %-16s  %-6s  %-3d  %s\n", k.key_id, k.provider, k.hint,
					   k.key_version, k.revoked_at[0] ? "revoked" : "active");
		pgm_result_free(r);
		return 0;
	}
	return usage_error("unknown keys subcommand \"%s\"", sub);
}

/* ------------------------------------------------------------------------
 * rotate-keys, verify, demo
 * ------------------------------------------------------------------------ */

static int
cmd_rotate(int argc, char **argv)
{
	long long	batch;
	long		total = 0;
	int64_t		n = 0;
	pgm_result *r = NULL;
	progress	p;

	if (int_opt(argc, argv, "--batch", 1, INT32_MAX, 100, &batch) != 0)
		return 2;
	/* an upper bound for the bar, when this role may count */
	if (pgm_exec(conn, "SELECT count(*) AS n FROM pgmarket.provider_keys", 0, NULL, &r) == PGM_OK)
		total = atol(pgm_result_value(r, 0, "n"));
	pgm_result_free(r);
	progress_start(&p, "re-encrypting", total);
	do
	{
		if (pgm_rotate_master_key(conn, (int) batch, &n) != PGM_OK)
		{
			progress_end(&p);
			complain("rotate_master_key");
			return 1;
		}
		if (n > 0)
			progress_step(&p, (long) n);
	} while (n > 0);
	progress_end(&p);
	printf("rotation done: %ld provider keys re-encrypted\n", p.done);
	return 0;
}

/*
 * An anchor file: one line, the anchor's 80 hex digits.  Returns 1 when
 * read, 0 when the file does not exist, -1 when it is not an anchor file.
 */
static int
read_anchor(const char *path, unsigned char *anchor)
{
	FILE	   *f = fopen(path, "r");
	char		line[2 * PGM_AUDIT_ANCHOR_LEN + 8];
	size_t		len;
	int			i;

	if (f == NULL)
		return errno == ENOENT ? 0 : -1;
	if (fgets(line, sizeof(line), f) == NULL)
	{
		fclose(f);
		return -1;
	}
	fclose(f);
	len = strcspn(line, "\r\n");
	if (len != 2 * PGM_AUDIT_ANCHOR_LEN)
		return -1;
	for (i = 0; i < PGM_AUDIT_ANCHOR_LEN; i++)
	{
		unsigned int v;

		if (!isxdigit((unsigned char) line[2 * i]) ||
			!isxdigit((unsigned char) line[2 * i + 1]) ||
			sscanf(line + 2 * i, "%2x", &v) != 1)
			return -1;
		anchor[i] = (unsigned char) v;
	}
	return 1;
}

/* Replaces the anchor file (a new file renamed over it); 0 on failure. */
static int
write_anchor(const char *path, const unsigned char *anchor)
{
	char		tmp[4200];
	FILE	   *f;
	int			i,
				ok;

	if (snprintf(tmp, sizeof(tmp), "%s.new", path) >= (int) sizeof(tmp))
		return 0;
	f = fopen(tmp, "w");
	if (f == NULL)
		return 0;
	for (i = 0; i < PGM_AUDIT_ANCHOR_LEN; i++)
		fprintf(f, "%02x", anchor[i]);
	fputc('\n', f);
	ok = fflush(f) == 0 && fsync(fileno(f)) == 0;
	ok = fclose(f) == 0 && ok;
	if (!ok || rename(tmp, path) != 0)
	{
		unlink(tmp);
		return 0;
	}
	return 1;
}

/*
 * verify [--anchor FILE]: verify_ledger and verify_audit.  With an anchor
 * file, the audit chain must still pass through the anchor it holds; then
 * the file is advanced to the chain's head (created on the first run).  A
 * chain that no longer contains the anchor fails (exit 1) and leaves the
 * file as it was.  The check and the new head come from one snapshot.
 */
static int
cmd_verify(int argc, char **argv)
{
	pgm_result *r = NULL;
	int64_t		bad = 0,
				checked = 0;
	int			i,
				rc = 0;
	const char *anchor_file = NULL;
	unsigned char anchor[PGM_AUDIT_ANCHOR_LEN];
	int			have_anchor = 0;
	pgm_audit_head_info head;
	pgm_status	st;

	for (i = 0; i < argc; i++)
	{
		if (strcmp(argv[i], "--anchor") == 0 && i + 1 < argc)
			anchor_file = argv[++i];
		else
			return usage_error("verify takes only --anchor FILE, not \"%s\"", argv[i]);
	}
	if (anchor_file)
	{
		have_anchor = read_anchor(anchor_file, anchor);
		if (have_anchor < 0)
		{
			fprintf(stderr, "pgmarket verify: %s is not an anchor file (one line of %d hex digits)\n",
					anchor_file, 2 * PGM_AUDIT_ANCHOR_LEN);
			return 2;
		}
	}

	if (pgm_verify_ledger(conn, &r) != PGM_OK)
	{
		complain("verify_ledger");
		return 1;
	}
	for (i = 0; i < pgm_result_rows(r); i++)
		printf("ledger problem: user %s: %s\n", pgm_result_value(r, i, "user_id"),
			   pgm_result_value(r, i, "problem"));
	if (pgm_result_rows(r) == 0)
		printf("ledger: every balance equals the sum of its entries\n");
	else
		rc = 1;
	pgm_result_free(r);

	if (anchor_file == NULL)
	{
		if (pgm_verify_audit(conn, 0, &bad, &checked) != PGM_OK)
		{
			complain("verify_audit");
			return 1;
		}
	}
	else
	{
		r = NULL;
		if (pgm_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ", 0, NULL, &r) != PGM_OK)
		{
			complain("verify_audit");
			return 1;
		}
		pgm_result_free(r);
		st = pgm_verify_audit_anchor(conn, 0, have_anchor ? anchor : NULL,
									 sizeof(anchor), &bad, &checked);
		if (st != PGM_OK)
			complain("verify_audit");
		else if ((st = pgm_audit_head(conn, &head)) != PGM_OK)
			complain("audit_head");
		if (st != PGM_OK)
		{
			r = NULL;
			pgm_exec(conn, "ROLLBACK", 0, NULL, &r);
			pgm_result_free(r);
			return 1;
		}
		r = NULL;
		pgm_exec(conn, "COMMIT", 0, NULL, &r);
		pgm_result_free(r);
	}
	if (bad)
	{
		printf("audit trail: BROKEN at row %lld (%lld rows verified before it)\n",
			   (long long) bad, (long long) checked);
		if (anchor_file)
			printf("audit anchor: %s not advanced\n", anchor_file);
		return 1;
	}
	printf("audit trail: %lld sealed rows verified\n", (long long) checked);
	if (anchor_file)
	{
		if (!write_anchor(anchor_file, head.anchor))
		{
			fprintf(stderr, "pgmarket verify: cannot write %s: %s\n", anchor_file,
					strerror(errno));
			return 1;
		}
		printf("audit anchor: %s %s id %lld\n", anchor_file,
			   have_anchor ? "verified, advanced to" : "created at",
			   (long long) head.last_id);
	}
	return rc;
}

/*
 * health: print health() and exit 0 when it says ok, 1 when not, 3 when
 * the server cannot be reached or the call fails.  It connects on its own,
 * so that an unreachable server is told apart from an unhealthy one.
 */
static int
cmd_health(const char *conninfo, int argc, char **argv)
{
	char	   *j = NULL;
	json	   *doc;
	json	   *ok;
	char		err[256];
	int			rc;

	if (has_flag(argc, argv, "--help") || has_flag(argc, argv, "-h"))
	{
		printf("usage: pgmarket [-d CONNINFO] health\n"
			   "Prints pgmarket.health() as JSON; exits 0 when it is ok, 1 when not,\n"
			   "3 when the server cannot be reached or the call fails.\n");
		return 0;
	}
	if (argc > 0)
		return usage_error("health takes no arguments, not \"%s\"", argv[0]);
	conn = pgm_connect(conninfo);
	if (conn == NULL)
	{
		fprintf(stderr, "pgmarket: out of memory\n");
		return 3;
	}
	if (pgm_conn_status(conn) != PGM_OK)
	{
		fprintf(stderr, "pgmarket: cannot connect: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		return 3;
	}
	if (pgm_health(conn, &j) != PGM_OK)
	{
		complain("health");
		pgm_finish(conn);
		return 3;
	}
	pgm_finish(conn);
	printf("%s\n", j);
	doc = json_parse(j, strlen(j), err, sizeof(err));
	ok = doc && doc->type == JSON_OBJECT ? json_get(doc, "ok") : NULL;
	rc = ok && ok->type == JSON_TRUE ? 0 : 1;
	json_free(doc);
	pgm_free(j);
	return rc;
}

static int
cmd_demo(const char *argv0)
{
	char		path[4200];
	const char *dirs[] = {"scripts", "../scripts", NULL};
	char		self[4096];
	ssize_t		len;
	int			i;

	for (i = 0; dirs[i]; i++)
	{
		snprintf(path, sizeof(path), "%s/demo.sh", dirs[i]);
		if (access(path, R_OK) == 0)
			goto found;
	}
	/* next to the executable: client/pgmarket -> scripts/demo.sh */
	len = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (len > 0)
	{
		char	   *slash;

		self[len] = '\0';
		if ((slash = strrchr(self, '/')) != NULL)
		{
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/../scripts/demo.sh", self);
			if (access(path, R_OK) == 0)
				goto found;
		}
	}
	(void) argv0;
	fprintf(stderr, "pgmarket demo: scripts/demo.sh not found; from a clone of pgmarket, run\n"
			"  bash scripts/demo.sh     (a throwaway cluster with the extension and a tour)\n");
	return 1;
found:
	execlp("bash", "bash", path, (char *) NULL);
	fprintf(stderr, "pgmarket demo: cannot run bash %s: %s\n", path, strerror(errno));
	return 1;
}

/* ------------------------------------------------------------------------
 * import
 * ------------------------------------------------------------------------ */

static const char *
str_member(const json *o, const char *key)
{
	json	   *v = json_get(o, key);

	return v && v->type == JSON_STRING ? v->text : NULL;
}

typedef struct
{
	const char *id;
	const json *user;			/* in the users section, or NULL */
	int			in_db;			/* exists already */
	int			rejected;		/* unusable: everything of it is rejected */
	int			has_balance;
	int64_t		total,
				spent,
				deposits,
				charges;
} imp_user;

typedef struct
{
	const json *t;
	imp_user   *u;
	int			charge;			/* else deposit */
	int			ok;
	char		amount[PGM_AMOUNT_LEN];
	int64_t		tokens;
} imp_tx;

typedef struct
{
	imp_user   *users;
	size_t		nusers,
				capusers;
	long		rejected;
} importer;

static void
reject(importer *im, const char *section, const char *record, const char *fmt,...)
{
	va_list		ap;

	im->rejected++;
	fprintf(stderr, "rejected %s[%s]: ", section, record);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* reject() for the store's sections (store_io.c). */
static void
reject_store(void *arg, const char *section, const char *record, const char *reason)
{
	reject((importer *) arg, section, record, "%s", reason);
}

static imp_user *
find_user(importer *im, const char *id, int create)
{
	size_t		i;

	for (i = 0; i < im->nusers; i++)
		if (strcasecmp(im->users[i].id, id) == 0)
			return &im->users[i];
	if (!create)
		return NULL;
	if (im->nusers == im->capusers)
	{
		size_t		cap = im->capusers ? im->capusers * 2 : 64;
		imp_user   *nu = realloc(im->users, cap * sizeof(imp_user));

		if (nu == NULL)
			return NULL;
		im->users = nu;
		im->capusers = cap;
	}
	memset(&im->users[im->nusers], 0, sizeof(imp_user));
	im->users[im->nusers].id = id;
	return &im->users[im->nusers++];
}

/* Is the user in the database (active)? -1 on error. */
static int
user_in_db(const char *id)
{
	pgm_result *r = NULL;
	const char *p[1] = {id};
	int			found;

	if (pgm_exec(conn, "SELECT is_active FROM pgmarket.users WHERE id = $1::uuid", 1, p, &r) != PGM_OK)
		return -1;
	found = pgm_result_rows(r) > 0 && strcmp(pgm_result_value(r, 0, "is_active"), "t") == 0;
	pgm_result_free(r);
	return found;
}

static int
server_has(const char *signature)
{
	pgm_result *r = NULL;
	const char *p[1] = {signature};
	int			yes = 0;

	if (pgm_exec(conn, "SELECT pg_catalog.to_regprocedure($1) IS NOT NULL AS v", 1, p, &r) == PGM_OK)
		yes = strcmp(pgm_result_value(r, 0, "v"), "t") == 0;
	pgm_result_free(r);
	return yes;
}

static char *
read_file(const char *path, size_t *len)
{
	FILE	   *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	char	   *buf = NULL;
	size_t		cap = 0,
				n = 0,
				got;

	if (f == NULL)
		return NULL;
	for (;;)
	{
		if (n + 65536 + 1 > cap)
		{
			char	   *nb;

			cap = (n + 65536 + 1) * 2;
			nb = realloc(buf, cap);
			if (nb == NULL)
			{
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		got = fread(buf + n, 1, 65536, f);
		n += got;
		if (got == 0)
			break;
	}
	if (buf)
		buf[n] = '\0';
	*len = n;
	if (f != stdin)
		fclose(f);
	return buf;
}

/* A chat session of the file, validated. */
typedef struct
{
	const char *id;				/* the session uuid in the file */
	const json *s;
	imp_user   *u;
	const char *model;
	const json *messages;		/* an array, or NULL */
} imp_chat;

/* Is the file's session id already imported for its user?  1, 0; -1 on
 * error.  A session counts as present when it is that session (an export
 * imported back) or its context says {"imported_from": id}. */
static int
chat_session_present(const imp_chat *ch)
{
	pgm_result *r = NULL;
	int			row,
				found = 0;

	if (pgm_list_chat_sessions(conn, ch->u->id, &r) != PGM_OK)
		return -1;
	for (row = 0; row < pgm_result_rows(r) && !found; row++)
	{
		const char *sid = pgm_result_value(r, row, "session_id");
		const char *ctx = pgm_result_value(r, row, "context");

		if (sid && strcasecmp(sid, ch->id) == 0)
			found = 1;
		else if (ctx)
		{
			char		err[64];
			json	   *cj = json_parse(ctx, strlen(ctx), err, sizeof(err));
			const char *from = cj ? str_member(cj, "imported_from") : NULL;

			found = from && strcasecmp(from, ch->id) == 0;
			json_free(cj);
		}
	}
	pgm_result_free(r);
	return found;
}

/* Runs SQL outside the library (transaction control); 1 on success. */
static int
raw_exec(const char *sql)
{
	PGresult   *res = PQexec(pgm_pgconn(conn), sql);
	int			ok = PQresultStatus(res) == PGRES_COMMAND_OK;

	if (!ok)
		fprintf(stderr, "pgmarket import: %s failed: %s", sql, PQerrorMessage(pgm_pgconn(conn)));
	PQclear(res);
	return ok;
}

/*
 * One session and its messages, in one transaction: the session (the server
 * chooses its id), the context {"imported_from": id} that a re-run finds,
 * then each message with its cost recorded (not charged).  *nmsg receives
 * the messages stored.  PGM_OK, or the failing call's status with the
 * transaction rolled back.
 */
static pgm_status
import_chat_session(const imp_chat *ch, long *nmsg)
{
	char		sid[PGM_UUID_LEN],
				context[96];
	size_t		j;
	pgm_status	st;

	*nmsg = 0;
	if (!raw_exec("BEGIN"))
		return PGM_CONNECTION_ERROR;
	st = pgm_create_chat_session(conn, ch->u->id, ch->model, str_member(ch->s, "title"),
								 str_member(ch->s, "agent_id"), sid);
	if (st == PGM_OK)
	{
		snprintf(context, sizeof(context), "{\"imported_from\": \"%s\"}", ch->id);
		st = pgm_update_chat_context(conn, ch->u->id, sid, context);
	}
	for (j = 0; st == PGM_OK && ch->messages && j < ch->messages->n; j++)
	{
		const json *m = ch->messages->items[j];
		const json *tokens = json_get(m, "tokens"),
				   *cost = json_get(m, "cost"),
				   *tools = json_get(m, "tool_calls");
		char		amount[PGM_AMOUNT_LEN] = "0";
		char	   *tool_text = NULL;
		int64_t		micro = 0;
		const char *why;

		if (cost && cost->type != JSON_NULL && read_amount(cost, &micro, &why))
			pgm_micro_to_str(micro, amount);
		if (tools && tools->type != JSON_NULL && (tool_text = json_to_text(tools)) == NULL)
		{
			fprintf(stderr, "pgmarket import: out of memory\n");
			st = PGM_CLIENT_ERROR;
			break;
		}
		st = pgm_save_chat_message(conn, ch->u->id, sid, str_member(m, "role"),
								   str_member(m, "content"),
								   tokens && tokens->type == JSON_NUMBER ? atoi(tokens->text) : 0,
								   amount, tool_text, NULL);
		free(tool_text);
		if (st == PGM_OK)
			(*nmsg)++;
	}
	if (st == PGM_OK)
		return raw_exec("COMMIT") ? PGM_OK : PGM_CONNECTION_ERROR;
	PQclear(PQexec(pgm_pgconn(conn), "ROLLBACK"));
	*nmsg = 0;
	return st;
}

static int
cmd_import(int argc, char **argv)
{
	char	   *a[1];
	char		err[256];
	size_t		len,
				i,
				k;
	char	   *text;
	json	   *doc,
			   *users,
			   *balances,
			   *txs,
			   *keys,
			   *chat;
	importer	im = {0};
	imp_tx	   *tx = NULL;
	size_t		ntx = 0;
	imp_chat   *chats = NULL;
	size_t		nchats = 0;
	long		steps = 0;
	long		users_created = 0,
				users_present = 0,
				entries_new = 0,
				entries_replayed = 0,
				keys_new = 0,
				keys_present = 0,
				hashes_skipped = 0,
				chats_new = 0,
				chats_present = 0,
				chat_messages_new = 0;
	int			have_chat = 0;
	int			have_store = 0;
	store_counts projects = {0},
				templates = {0};
	int			have_import_user;
	progress	p;
	int			rc;

	if (positional(argc, argv, a, 1) != 1)
		return usage_error("import needs FILE (or - for stdin)");
	text = read_file(a[0], &len);
	if (text == NULL)
	{
		fprintf(stderr, "pgmarket import: cannot read %s: %s\n", a[0], strerror(errno));
		return 1;
	}
	doc = import_parse(text, len, err, sizeof(err));
	free(text);
	if (doc == NULL)
	{
		fprintf(stderr, "pgmarket import: %s: %s\n", a[0], err);
		return 2;
	}
	for (i = 0; i < doc->n; i++)
		if (strcmp(doc->keys[i], "users") && strcmp(doc->keys[i], "balance_tracker") &&
			strcmp(doc->keys[i], "transactions") && strcmp(doc->keys[i], "api_keys") &&
			strcmp(doc->keys[i], "chat_history") && strcmp(doc->keys[i], "projects") &&
			strcmp(doc->keys[i], "templates"))
			fprintf(stderr, "pgmarket import: warning: unknown section \"%s\" ignored\n",
					doc->keys[i]);
	users = json_get(doc, "users");
	balances = json_get(doc, "balance_tracker");
	txs = json_get(doc, "transactions");
	keys = json_get(doc, "api_keys");
	chat = json_get(doc, "chat_history");

	/* --- validation: users ------------------------------------------- */
	for (i = 0; users && i < users->n; i++)
	{
		const char *id = users->keys[i];
		const json *u = users->items[i];
		const char *email = str_member(u, "email"),
				   *uname = str_member(u, "username");
		imp_user   *iu;
		int			dup = 0;

		if (!is_uuid(id))
		{
			reject(&im, "users", id, "malformed uuid");
			continue;
		}
		if (u->type != JSON_OBJECT || email == NULL || uname == NULL)
		{
			reject(&im, "users", id, "needs an object with string email and username");
			continue;
		}
		for (k = 0; k < i; k++)
		{
			const char *e2 = str_member(users->items[k], "email"),
					   *n2 = str_member(users->items[k], "username");

			if ((e2 && strcasecmp(e2, email) == 0) || (n2 && strcasecmp(n2, uname) == 0))
				dup = 1;
		}
		if (dup)
		{
			reject(&im, "users", id, "duplicate email or username %s / %s in the file", email, uname);
			continue;
		}
		if (find_user(&im, id, 0))
		{
			reject(&im, "users", id, "listed twice");
			continue;
		}
		iu = find_user(&im, id, 1);
		if (iu == NULL)
			goto oom;
		iu->user = u;
		steps++;
	}

	/* --- validation: balances ------------------------------------------ */
	for (i = 0; balances && i < balances->n; i++)
	{
		const char *id = balances->keys[i];
		const json *b = balances->items[i];
		const char *why;
		int64_t		total,
					spent;
		imp_user   *iu;

		if (!is_uuid(id))
		{
			reject(&im, "balance_tracker", id, "malformed uuid");
			continue;
		}
		if (b->type != JSON_OBJECT)
		{
			reject(&im, "balance_tracker", id, "must be an object with total and spent");
			continue;
		}
		if (!read_amount(json_get(b, "total"), &total, &why))
		{
			reject(&im, "balance_tracker", id, "total is %s", why);
			continue;
		}
		if (!read_amount(json_get(b, "spent") ? json_get(b, "spent") : NULL, &spent, &why))
		{
			reject(&im, "balance_tracker", id, "spent is %s", why);
			continue;
		}
		if (spent > total)
		{
			reject(&im, "balance_tracker", id, "spent %s exceeds total %s",
				   json_get(b, "spent")->text, json_get(b, "total")->text);
			continue;
		}
		iu = find_user(&im, id, 1);
		if (iu == NULL)
			goto oom;
		iu->has_balance = 1;
		iu->total = total;
		iu->spent = spent;
		steps += 2;
	}

	/* --- validation: transactions -------------------------------------- */
	if (txs && txs->n)
	{
		tx = calloc(txs->n, sizeof(imp_tx));
		if (tx == NULL)
			goto oom;
	}
	for (i = 0; txs && i < txs->n; i++)
	{
		const json *t = txs->items[i];
		const char *id = str_member(t, "id"),
				   *uid = str_member(t, "user_id"),
				   *type = str_member(t, "type"),
				   *model = str_member(t, "model_id"),
				   *why;
		json	   *tokens = json_get(t, "tokens");
		char		label[128];
		int64_t		m;
		imp_tx	   *x = &tx[ntx];
		int			dup = 0;

		snprintf(label, sizeof(label), "%zu", i);
		if (t->type != JSON_OBJECT)
		{
			reject(&im, "transactions", label, "not an object");
			continue;
		}
		if (id == NULL || id[0] == '\0')
		{
			reject(&im, "transactions", label, "needs a string id (its idempotency key)");
			continue;
		}
		snprintf(label, sizeof(label), "%zu, id %.40s", i, id);
		if (!is_uuid(uid))
		{
			reject(&im, "transactions", label, "malformed user_id");
			continue;
		}
		if (type && (strcmp(type, "deposit") == 0 || strcmp(type, "credit") == 0 ||
					 strcmp(type, "topup") == 0))
			x->charge = 0;
		else if (type && (strcmp(type, "charge") == 0 || strcmp(type, "debit") == 0 ||
						  strcmp(type, "usage") == 0))
			x->charge = 1;
		else
		{
			reject(&im, "transactions", label, "type must be deposit or charge, not %s",
				   type ? type : "missing");
			continue;
		}
		m = 0;
		if (!read_amount(json_get(t, "amount"), &m, &why))
		{
			reject(&im, "transactions", label, "amount is %s", why);
			continue;
		}
		if (m == 0)
		{
			reject(&im, "transactions", label, "amount is zero");
			continue;
		}
		x->tokens = 0;
		if (tokens && tokens->type != JSON_NULL)
		{
			char	   *end;

			errno = 0;
			if (tokens->type != JSON_NUMBER ||
				(x->tokens = strtoll(tokens->text, &end, 10), *end != '\0') ||
				errno == ERANGE || x->tokens < 0)
			{
				reject(&im, "transactions", label, "tokens must be a whole number >= 0");
				continue;
			}
		}
		for (k = 0; k < ntx; k++)
			if (strcmp(str_member(tx[k].t, "id"), id) == 0 &&
				strcasecmp(str_member(tx[k].t, "user_id"), uid) == 0)
				dup = 1;
		if (dup)
		{
			reject(&im, "transactions", label, "duplicate id");
			continue;
		}
		x->u = find_user(&im, uid, 1);
		if (x->u == NULL)
			goto oom;
		{
			/* the user's listed deposits or charges, checked: never wrapped */
			int64_t    *sum = x->charge ? &x->u->charges : &x->u->deposits;
			int64_t		next;

			if (__builtin_add_overflow(*sum, m, &next) || next >= PGM_MICRO_LIMIT)
			{
				reject(&im, "transactions", label,
					   "amount would take the user's listed %s to 9000000000000 credits or more",
					   x->charge ? "charges" : "deposits");
				continue;
			}
			*sum = next;
		}
		x->t = t;
		x->ok = 1;
		(void) model;
		pgm_micro_to_str(m, x->amount);
		ntx++;
		steps++;
	}

	/* --- validation: chat_history ----------------------------------------- */
	if (chat && chat->n)
	{
		chats = calloc(chat->n, sizeof(imp_chat));
		if (chats == NULL)
			goto oom;
	}
	for (i = 0; chat && i < chat->n; i++)
	{
		const char *id = chat->keys[i];
		const json *cs = chat->items[i];
		const char *uid = str_member(cs, "user_id");
		const json *model = json_get(cs, "model_id"),
				   *title = json_get(cs, "title"),
				   *agent = json_get(cs, "agent_id"),
				   *msgs = json_get(cs, "messages");
		imp_chat   *ch = &chats[nchats];
		const char *problem = NULL;
		char		why[128];

		if (!is_uuid(id))
		{
			reject(&im, "chat_history", id, "malformed uuid");
			continue;
		}
		if (cs->type != JSON_OBJECT)
		{
			reject(&im, "chat_history", id, "must be an object with user_id, model_id, messages");
			continue;
		}
		if (!is_uuid(uid))
		{
			reject(&im, "chat_history", id, "malformed user_id");
			continue;
		}
		if ((model && model->type != JSON_NULL && model->type != JSON_STRING) ||
			(title && title->type != JSON_NULL && title->type != JSON_STRING) ||
			(agent && agent->type != JSON_NULL && agent->type != JSON_STRING))
		{
			reject(&im, "chat_history", id, "model_id, title and agent_id must be strings");
			continue;
		}
		if (msgs && msgs->type != JSON_NULL && msgs->type != JSON_ARRAY)
		{
			reject(&im, "chat_history", id, "messages must be an array");
			continue;
		}
		for (k = 0; msgs && msgs->type == JSON_ARRAY && k < msgs->n && !problem; k++)
			problem = chat_message_problem(msgs->items[k], why, sizeof(why));
		if (problem)
		{
			reject(&im, "chat_history", id, "message %zu: %s", k - 1, problem);
			continue;
		}
		for (k = 0; k < nchats; k++)
			if (strcasecmp(chats[k].id, id) == 0)
				problem = "listed twice";
		if (problem)
		{
			reject(&im, "chat_history", id, "%s", problem);
			continue;
		}
		ch->id = id;
		ch->s = cs;
		ch->model = model && model->type == JSON_STRING ? model->text : "unknown";
		ch->messages = msgs && msgs->type == JSON_ARRAY ? msgs : NULL;
		ch->u = find_user(&im, uid, 1);
		if (ch->u == NULL)
			goto oom;
		nchats++;
		steps++;
	}

	/* --- consistency and existence ---------------------------------------- */
	for (i = 0; i < im.nusers; i++)
	{
		imp_user   *u = &im.users[i];
		int			in_db = user_in_db(u->id);

		if (in_db < 0)
		{
			complain("import: looking up users");
			goto fail;
		}
		u->in_db = in_db;
		if (u->user == NULL && !in_db)
		{
			reject(&im, "user", u->id, "unknown user: not in users and not in the database");
			u->rejected = 1;
		}
		else if (u->has_balance && (u->deposits > u->total || u->charges > u->spent))
		{
			char		a1[PGM_AMOUNT_LEN],
						a2[PGM_AMOUNT_LEN],
						a3[PGM_AMOUNT_LEN],
						a4[PGM_AMOUNT_LEN];

			reject(&im, "balance_tracker", u->id,
				   "inconsistent: listed deposits %s / charges %s exceed total %s / spent %s",
				   pgm_micro_to_str(u->deposits, a1), pgm_micro_to_str(u->charges, a2),
				   pgm_micro_to_str(u->total, a3), pgm_micro_to_str(u->spent, a4));
			u->rejected = 1;
		}
	}
	if (keys)
		steps += (long) keys->n;

	/* --- apply -------------------------------------------------------------- */
	have_import_user = server_has("pgmarket.import_user(uuid,text,text,text,timestamptz)");
	progress_start(&p, "importing", steps);
	for (i = 0; i < im.nusers; i++)
	{
		imp_user   *u = &im.users[i];
		const char *hash;
		char		out[PGM_UUID_LEN];

		if (u->user == NULL)
			continue;
		progress_step(&p, 1);
		if (u->in_db)
		{
			users_present++;
			continue;
		}
		hash = str_member(u->user, "password_hash");
		if (hash && have_import_user)
		{
			const char *params[5] = {u->id, str_member(u->user, "email"),
				str_member(u->user, "username"), hash,
			str_member(u->user, "created_at")};

			if (pgm_exec(conn, "SELECT pgmarket.import_user($1::uuid, $2, $3, $4, "
						 "$5::timestamptz)", 5, params, NULL) == PGM_OK)
			{
				users_created++;
				continue;
			}
		}
		else
		{
			if (hash)
				hashes_skipped++;
			if (pgm_create_user(conn, str_member(u->user, "email"),
								str_member(u->user, "username"), NULL, NULL, u->id,
								out) == PGM_OK)
			{
				users_created++;
				continue;
			}
		}
		if (pgm_last_status(conn) == PGM_CONNECTION_ERROR)
		{
			progress_end(&p);
			complain("import");
			goto fail;
		}
		progress_end(&p);
		reject(&im, "users", u->id, "%s", pgm_errmsg(conn));
		u->rejected = 1;
	}

	/* per user: deposits, the opening deposit, charges, the opening charge */
	for (int pass = 0; pass < 2; pass++)
	{
		for (i = 0; i < ntx; i++)
		{
			imp_tx	   *x = &tx[i];
			pgm_ledger_result r;
			pgm_status	st;
			const char *id = str_member(x->t, "id");
			const char *model = str_member(x->t, "model_id");
			const char *ts = str_member(x->t, "timestamp");
			char		note[128];

			if (x->charge != pass)
				continue;
			progress_step(&p, 1);
			if (x->u->rejected)
			{
				im.rejected++;	/* reported with its user */
				continue;
			}
			snprintf(note, sizeof(note), "import%s%.64s", ts ? " " : "", ts ? ts : "");
			if (x->charge)
				st = pgm_deduct_balance(conn, x->u->id, x->amount, model ? model : "unknown",
										x->tokens, id, &r);
			else
				st = pgm_add_funds(conn, x->u->id, x->amount, id, note, &r);
			if (st == PGM_OK)
			{
				if (r.replayed)
					entries_replayed++;
				else
					entries_new++;
				continue;
			}
			if (st == PGM_CONNECTION_ERROR)
			{
				progress_end(&p);
				complain("import");
				goto fail;
			}
			progress_end(&p);
			reject(&im, "transactions", id, "%s (%s)", pgm_errmsg(conn), pgm_sqlstate(conn));
		}
		for (i = 0; i < im.nusers; i++)
		{
			imp_user   *u = &im.users[i];
			int64_t		diff;
			char		key[96],
						amount[PGM_AMOUNT_LEN];
			pgm_ledger_result r;
			pgm_status	st;

			if (!u->has_balance)
				continue;
			progress_step(&p, 1);
			if (u->rejected)
				continue;
			diff = pass == 0 ? u->total - u->deposits : u->spent - u->charges;
			if (diff <= 0)
				continue;
			pgm_micro_to_str(diff, amount);
			snprintf(key, sizeof(key), "import-opening-%s-%s", pass ? "charge" : "deposit", u->id);
			st = pass == 0
				? pgm_add_funds(conn, u->id, amount, key, "import: opening balance", &r)
				: pgm_deduct_balance(conn, u->id, amount, "import", 0, key, &r);
			if (st == PGM_OK)
			{
				if (r.replayed)
					entries_replayed++;
				else
					entries_new++;
				continue;
			}
			if (st == PGM_CONNECTION_ERROR)
			{
				progress_end(&p);
				complain("import");
				goto fail;
			}
			progress_end(&p);
			reject(&im, "balance_tracker", u->id, "opening %s: %s (%s)",
				   pass ? "charge" : "deposit", pgm_errmsg(conn), pgm_sqlstate(conn));
		}
	}

	/* provider keys, sealed on the way in; one imported key per provider */
	for (i = 0; keys && i < keys->n; i++)
	{
		const char *uid = keys->keys[i];
		const json *pk = keys->items[i];
		imp_user   *u = is_uuid(uid) ? find_user(&im, uid, 0) : NULL;
		int			ok_user;

		progress_step(&p, 1);
		if (!is_uuid(uid) || pk->type != JSON_OBJECT)
		{
			reject(&im, "api_keys", uid, is_uuid(uid) ? "must be an object of provider: key"
				   : "malformed uuid");
			continue;
		}
		ok_user = u ? !u->rejected : user_in_db(uid) == 1;
		if (!ok_user)
		{
			reject(&im, "api_keys", uid, "unknown user");
			continue;
		}
		for (k = 0; k < pk->n; k++)
		{
			const json *secret = pk->items[k];
			pgm_result *r = NULL;
			char		key_id[PGM_UUID_LEN],
						rec[128];
			int			present = 0,
						row;
			size_t		slen;

			snprintf(rec, sizeof(rec), "%s.%s", uid, pk->keys[k]);
			if (secret->type != JSON_STRING || secret->len < 4 || secret->len > 4096 ||
				strlen(secret->text) != secret->len)
			{
				reject(&im, "api_keys", rec, "the key must be a string of 4 to 4096 characters");
				continue;
			}
			for (slen = 0; slen < secret->len; slen++)
				if (isspace((unsigned char) secret->text[slen]) ||
					iscntrl((unsigned char) secret->text[slen]))
					break;
			if (slen != secret->len)
			{
				reject(&im, "api_keys", rec, "malformed key (contains white space)");
				continue;
			}
			if (pgm_list_provider_keys(conn, uid, &r) == PGM_OK)
				for (row = 0; row < pgm_result_rows(r); row++)
				{
					pgm_provider_key_info info;

					pgm_result_provider_key(r, row, &info);
					if (info.revoked_at[0] == '\0' && info.label &&
						strcmp(info.label, "imported") == 0 &&
						strcasecmp(info.provider, pk->keys[k]) == 0 &&
						strcmp(info.hint, secret->text + secret->len - 4) == 0)
						present = 1;
				}
			pgm_result_free(r);
			if (present)
			{
				keys_present++;
				continue;
			}
			if (pgm_put_provider_key(conn, uid, pk->keys[k], secret->text, "imported",
									 key_id) == PGM_OK)
				keys_new++;
			else
			{
				progress_end(&p);
				reject(&im, "api_keys", rec, "%s (%s)", pgm_errmsg(conn), pgm_sqlstate(conn));
			}
		}
	}

	/* chat sessions: one transaction each, found again by imported_from */
	if (chat && chat->n > 0)
	{
		have_chat = server_has("pgmarket.create_chat_session(uuid,text,text,text)");
		if (!have_chat)
			fprintf(stderr, "pgmarket import: warning: section chat_history skipped: "
					"this server has no chat functions (create_chat_session)\n");
	}
	for (i = 0; have_chat && i < nchats; i++)
	{
		imp_chat   *ch = &chats[i];
		long		nmsg = 0;
		int			present;
		pgm_status	st;

		progress_step(&p, 1);
		if (ch->u->rejected)
		{
			im.rejected++;		/* reported with its user */
			continue;
		}
		present = chat_session_present(ch);
		if (present < 0)
		{
			progress_end(&p);
			if (pgm_last_status(conn) == PGM_CONNECTION_ERROR)
			{
				complain("import: list_chat_sessions");
				goto fail;
			}
			reject(&im, "chat_history", ch->id, "%s (%s)", pgm_errmsg(conn), pgm_sqlstate(conn));
			continue;
		}
		if (present)
		{
			chats_present++;
			continue;
		}
		st = import_chat_session(ch, &nmsg);
		if (st == PGM_OK)
		{
			chats_new++;
			chat_messages_new += nmsg;
			continue;
		}
		progress_end(&p);
		if (st == PGM_CONNECTION_ERROR)
		{
			complain("import");
			goto fail;
		}
		reject(&im, "chat_history", ch->id, "%s (%s)", pgm_errmsg(conn), pgm_sqlstate(conn));
	}
	progress_end(&p);

	/* the agent platform's store: templates, then projects */
	if (json_get(doc, "projects") || json_get(doc, "templates"))
	{
		have_store = server_has("pgmarket.get_template(text)");
		if (!have_store)
			fprintf(stderr, "pgmarket import: warning: sections projects and templates "
					"skipped: this server has no store functions (save_project)\n");
		else if (store_import(conn, doc, reject_store, &im, &projects, &templates) != 0)
		{
			complain("import: projects and templates");
			goto fail;
		}
	}

	printf("users: %ld created, %ld already present\n", users_created, users_present);
	printf("ledger entries: %ld new, %ld already present\n", entries_new, entries_replayed);
	printf("provider keys: %ld stored (sealed), %ld already present\n", keys_new, keys_present);
	if (have_chat)
		printf("chat sessions: %ld created (%ld messages), %ld already present\n",
			   chats_new, chat_messages_new, chats_present);
	if (have_store)
	{
		printf("templates: %ld created, %ld already present\n",
			   templates.created, templates.present);
		printf("projects: %ld created, %ld already present\n",
			   projects.created, projects.present);
	}
	if (hashes_skipped)
		printf("password hashes: %ld not imported (the server has no import_user yet); "
			   "those users have no password\n", hashes_skipped);
	printf("rejected records: %ld\n", im.rejected);
	rc = im.rejected ? 1 : 0;
	if (rc)
		fprintf(stderr, "pgmarket import: %ld records rejected (listed above); "
				"fix them and run the import again: what was loaded stays, "
				"nothing is loaded twice\n", im.rejected);
	free(tx);
	free(chats);
	free(im.users);
	json_free(doc);
	return rc;

oom:
	fprintf(stderr, "pgmarket import: out of memory\n");
fail:
	free(tx);
	free(chats);
	free(im.users);
	json_free(doc);
	return 1;
}

/* ------------------------------------------------------------------------
 * export
 * ------------------------------------------------------------------------ */

/*
 * The messages of a session, oldest first: pages of get_chat_history
 * newest first (keyset on message_id), written in reverse.  0, or 1 with
 * the error reported.
 */
static int
export_chat_messages(FILE *f, const char *uid, const char *sid)
{
	pgm_result **pages = NULL;
	size_t		npages = 0,
				cap = 0,
				k;
	int64_t		before = 0;
	int			row,
				first = 1,
				rc = 0;

	for (;;)
	{
		pgm_result *r = NULL;
		int			n;

		if (pgm_get_chat_history(conn, uid, sid, 1000, before, 0, &r) != PGM_OK)
		{
			complain("export: get_chat_history");
			rc = 1;
			break;
		}
		if (npages == cap)
		{
			pgm_result **np;

			cap = cap ? cap * 2 : 4;
			np = realloc(pages, cap * sizeof(*pages));
			if (np == NULL)
			{
				fprintf(stderr, "pgmarket export: out of memory\n");
				pgm_result_free(r);
				rc = 1;
				break;
			}
			pages = np;
		}
		pages[npages++] = r;
		n = pgm_result_rows(r);
		if (n > 0)
			before = strtoll(pgm_result_value(r, n - 1, "message_id"), NULL, 10);
		if (n < 1000)
			break;
	}
	for (k = npages; rc == 0 && k-- > 0;)
		for (row = pgm_result_rows(pages[k]) - 1; row >= 0; row--)
		{
			const pgm_result *r = pages[k];
			const char *tools = pgm_result_value(r, row, "tool_calls");

			fprintf(f, "%s\n      {\"role\": ", first ? "" : ",");
			first = 0;
			json_write_string(f, pgm_result_value(r, row, "role"));
			fputs(", \"content\": ", f);
			json_write_string(f, pgm_result_value(r, row, "content"));
			fprintf(f, ", \"tokens\": %s, \"cost\": %s, \"timestamp\": \"%s\"",
					pgm_result_value(r, row, "tokens"), pgm_result_value(r, row, "cost"),
					pgm_result_value(r, row, "created_at"));
			if (tools)
				fprintf(f, ", \"tool_calls\": %s", tools);
			fputc('}', f);
		}
	for (k = 0; k < npages; k++)
		pgm_result_free(pages[k]);
	free(pages);
	if (rc == 0 && !first)
		fputs("\n    ", f);
	return rc;
}

static int
cmd_export(int argc, char **argv)
{
	char	   *a[1];
	int			with_secrets = has_flag(argc, argv, "--with-secrets");
	FILE	   *f = stdout;
	pgm_result *users = NULL;
	int			i,
				j,
				first,
				rc = 0,
				have_chat;
	progress	p;

	if (positional(argc, argv, a, 1) > 1)
		return usage_error("export takes at most one FILE");
	if (pgm_exec(conn, "SELECT id, email, username, to_char(created_at AT TIME ZONE 'UTC', "
				 "'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at "
				 "FROM pgmarket.users WHERE is_active ORDER BY created_at, id",
				 0, NULL, &users) != PGM_OK)
	{
		complain("export: reading users");
		return 1;
	}
	if (positional(argc, argv, a, 1) == 1 && strcmp(a[0], "-") != 0)
	{
		mode_t		old = umask(with_secrets ? 077 : 022);

		f = fopen(a[0], "w");
		umask(old);
		if (f == NULL)
		{
			fprintf(stderr, "pgmarket export: cannot write %s: %s\n", a[0], strerror(errno));
			pgm_result_free(users);
			return 1;
		}
	}
	have_chat = server_has("pgmarket.list_chat_sessions(uuid)");
	progress_start(&p, "exporting",
				   pgm_result_rows(users) * (2 + (with_secrets ? 1 : 0) + (have_chat ? 1 : 0)));

	fputs("{\n  \"users\": {", f);
	for (i = 0; i < pgm_result_rows(users); i++)
	{
		fprintf(f, "%s\n    \"%s\": {\"email\": ", i ? "," : "", pgm_result_value(users, i, "id"));
		json_write_string(f, pgm_result_value(users, i, "email"));
		fputs(", \"username\": ", f);
		json_write_string(f, pgm_result_value(users, i, "username"));
		fprintf(f, ", \"created_at\": \"%s\"}", pgm_result_value(users, i, "created_at"));
	}
	fputs("\n  },\n  \"balance_tracker\": {", f);
	for (i = 0; i < pgm_result_rows(users); i++)
	{
		pgm_balance b;

		if (pgm_get_balance(conn, pgm_result_value(users, i, "id"), &b) != PGM_OK)
		{
			complain("export: get_balance");
			rc = 1;
			goto done;
		}
		fprintf(f, "%s\n    \"%s\": {\"total\": %s, \"spent\": %s}", i ? "," : "",
				b.user_id, b.total_balance, b.spent_balance);
		progress_step(&p, 1);
	}
	fputs("\n  },\n  \"transactions\": [", f);
	first = 1;
	for (i = 0; i < pgm_result_rows(users); i++)
	{
		const char *uid = pgm_result_value(users, i, "id");
		int64_t		before = 0;
		int64_t    *refunded = NULL;
		size_t		nref = 0,
					capref = 0;
		int			pass;

		/* charges with refunds are left to the opening charge: the format
		 * has no refunds */
		for (pass = 0; pass < 2; pass++)
		{
			before = 0;
			for (;;)
			{
				pgm_result *r = NULL;
				pgm_ledger_entry e;
				int			n;

				if (pgm_ledger_entries(conn, uid, 1000, before, &r) != PGM_OK)
				{
					complain("export: ledger_entries");
					free(refunded);
					rc = 1;
					goto done;
				}
				n = pgm_result_rows(r);
				for (j = 0; j < n; j++)
				{
					size_t		k;
					int			skip = 0;

					pgm_result_ledger_entry(r, j, &e);
					before = e.entry_id;
					if (pass == 0)
					{
						if (e.refund_of)
						{
							if (nref == capref)
							{
								capref = capref ? capref * 2 : 16;
								refunded = realloc(refunded, capref * sizeof(int64_t));
								if (refunded == NULL)
									abort();
							}
							refunded[nref++] = e.refund_of;
						}
						continue;
					}
					if (strcmp(e.kind, "refund") == 0)
						continue;
					for (k = 0; k < nref; k++)
						skip |= refunded[k] == e.entry_id;
					if (skip)
						continue;
					fprintf(f, "%s\n    {\"id\": ", first ? "" : ",");
					first = 0;
					if (e.idempotency_key)
						json_write_string(f, e.idempotency_key);
					else
						fprintf(f, "\"pgmarket-entry-%lld\"", (long long) e.entry_id);
					fprintf(f, ", \"user_id\": \"%s\", \"type\": \"%s\", \"amount\": %s, "
							"\"model_id\": ", uid, strcmp(e.kind, "charge") == 0 ? "charge" : "deposit",
							e.amount);
					if (e.model_id)
						json_write_string(f, e.model_id);
					else
						fputs("null", f);
					fprintf(f, ", \"tokens\": %lld, \"timestamp\": \"%s\"}",
							(long long) e.tokens_used, e.created_at);
				}
				pgm_result_free(r);
				if (n < 1000)
					break;
			}
		}
		free(refunded);
		progress_step(&p, 1);
	}
	fputs("\n  ]", f);
	if (have_chat)
	{
		fputs(",\n  \"chat_history\": {", f);
		first = 1;
		for (i = 0; i < pgm_result_rows(users); i++)
		{
			const char *uid = pgm_result_value(users, i, "id");
			pgm_result *sessions = NULL;

			progress_step(&p, 1);
			if (pgm_list_chat_sessions(conn, uid, &sessions) != PGM_OK)
			{
				complain("export: list_chat_sessions");
				rc = 1;
				goto done;
			}
			for (j = 0; j < pgm_result_rows(sessions); j++)
			{
				const char *sid = pgm_result_value(sessions, j, "session_id");
				const char *title = pgm_result_value(sessions, j, "title");
				const char *agent = pgm_result_value(sessions, j, "agent_id");

				fprintf(f, "%s\n    \"%s\": {\"user_id\": \"%s\", \"model_id\": ",
						first ? "" : ",", sid, uid);
				first = 0;
				json_write_string(f, pgm_result_value(sessions, j, "model_id"));
				fputs(", \"title\": ", f);
				if (title)
					json_write_string(f, title);
				else
					fputs("null", f);
				if (agent)
				{
					fputs(", \"agent_id\": ", f);
					json_write_string(f, agent);
				}
				fputs(", \"messages\": [", f);
				if (export_chat_messages(f, uid, sid) != 0)
				{
					pgm_result_free(sessions);
					rc = 1;
					goto done;
				}
				fputs("]}", f);
			}
			pgm_result_free(sessions);
		}
		fputs("\n  }", f);
	}
	if (server_has("pgmarket.get_template(text)") && store_export(conn, f, users) != 0)
	{
		complain("export: projects and templates");
		rc = 1;
		goto done;
	}
	if (with_secrets)
	{
		fputs(",\n  \"api_keys\": {", f);
		first = 1;
		for (i = 0; i < pgm_result_rows(users); i++)
		{
			const char *uid = pgm_result_value(users, i, "id");
			pgm_result *r = NULL;
			int			firstkey = 1;

			progress_step(&p, 1);
			if (pgm_list_provider_keys(conn, uid, &r) != PGM_OK)
			{
				complain("export: list_provider_keys");
				rc = 1;
				goto done;
			}
			for (j = 0; j < pgm_result_rows(r); j++)
			{
				pgm_provider_key_info k;
				char	   *secret = NULL;

				pgm_result_provider_key(r, j, &k);
				if (k.revoked_at[0])
					continue;
				if (pgm_get_provider_key(conn, uid, k.provider, &secret) != PGM_OK)
				{
					complain("export: get_provider_key");
					pgm_result_free(r);
					rc = 1;
					goto done;
				}
				if (firstkey)
					fprintf(f, "%s\n    \"%s\": {", first ? "" : ",", uid);
				fprintf(f, "%s\"%s\": ", firstkey ? "" : ", ", k.provider);
				json_write_string(f, secret);
				pgm_free_secret(secret);
				firstkey = 0;
				first = 0;
			}
			if (!firstkey)
				fputs("}", f);
			pgm_result_free(r);
		}
		fputs("\n  }", f);
	}
	fputs("\n}\n", f);
done:
	progress_end(&p);
	pgm_result_free(users);
	if (f != stdout && fclose(f) != 0)
	{
		fprintf(stderr, "pgmarket export: write failed: %s\n", strerror(errno));
		rc = 1;
	}
	if (rc == 0 && !with_secrets)
		fprintf(stderr, "pgmarket export: provider keys left out (--with-secrets writes "
				"them in plaintext; needs pgmarket_keyreader); password hashes are never "
				"exported\n");
	return rc;
}

/* ------------------------------------------------------------------------ */

int
main(int argc, char **argv)
{
	const char *conninfo = "";
	const char *actor = NULL;
	const char *cmd;
	int			i = 1,
				rc;

	while (i < argc && argv[i][0] == '-')
	{
		if ((strcmp(argv[i], "-d") == 0 || strcmp(argv[i], "--dbname") == 0) && i + 1 < argc)
		{
			conninfo = argv[i + 1];
			i += 2;
		}
		else if (strncmp(argv[i], "--dbname=", 9) == 0)
			conninfo = argv[i++] + 9;
		else if (strcmp(argv[i], "--actor") == 0 && i + 1 < argc)
		{
			actor = argv[i + 1];
			i += 2;
		}
		else if (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0)
		{
			quiet = 1;
			i++;
		}
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0)
		{
			fputs(usage_text, stdout);
			return 0;
		}
		else if (strcmp(argv[i], "--version") == 0)
		{
			printf("pgmarket %s\n", PGM_VERSION_STRING);
			return 0;
		}
		else
			return usage_error("unknown option \"%s\"", argv[i]);
	}
	if (i >= argc)
	{
		fputs(usage_text, stderr);
		return 2;
	}
	cmd = argv[i++];
	if (strcmp(cmd, "demo") == 0)
		return cmd_demo(argv[0]);
	if (strcmp(cmd, "health") == 0)
		return cmd_health(conninfo, argc - i, argv + i);
	if (strcmp(cmd, "help") == 0)
	{
		fputs(usage_text, stdout);
		return 0;
	}
	if (strcmp(cmd, "balance") && strcmp(cmd, "add-funds") && strcmp(cmd, "charge") &&
		strcmp(cmd, "keys") && strcmp(cmd, "rotate-keys") && strcmp(cmd, "verify") &&
		strcmp(cmd, "import") && strcmp(cmd, "export"))
		return usage_error("unknown command \"%s\"", cmd);

	conn = pgm_connect(conninfo);
	if (conn == NULL)
	{
		fprintf(stderr, "pgmarket: out of memory\n");
		return 1;
	}
	if (pgm_conn_status(conn) != PGM_OK)
	{
		fprintf(stderr, "pgmarket: cannot connect: %s\n", pgm_errmsg(conn));
		pgm_finish(conn);
		return 1;
	}
	if (actor)
		pgm_set_actor(conn, actor);
	argc -= i;
	argv += i;
	if (strcmp(cmd, "balance") == 0)
		rc = cmd_balance(argc, argv);
	else if (strcmp(cmd, "add-funds") == 0)
		rc = cmd_add_funds(argc, argv);
	else if (strcmp(cmd, "charge") == 0)
		rc = cmd_charge(argc, argv);
	else if (strcmp(cmd, "keys") == 0)
		rc = cmd_keys(argc, argv);
	else if (strcmp(cmd, "rotate-keys") == 0)
		rc = cmd_rotate(argc, argv);
	else if (strcmp(cmd, "verify") == 0)
		rc = cmd_verify(argc, argv);
	else if (strcmp(cmd, "import") == 0)
		rc = cmd_import(argc, argv);
	else
		rc = cmd_export(argc, argv);
	pgm_finish(conn);
	return rc;
}

/*
 * cli_verify.c: pgmarket verify [--anchor FILE]: verify_ledger and
 * verify_audit.  With an anchor file, the audit chain must still pass
 * through the anchor it holds; then the file is advanced to the chain's
 * head (created on the first run).  A chain that no longer contains the
 * anchor fails (exit 1) and leaves the file as it was.  The check and the
 * new head come from one snapshot.
 */
#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

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

/* Runs one statement of transaction control, its result dropped. */
static pgm_status
exec_quietly(const char *sql)
{
	pgm_result *r = NULL;
	pgm_status	st = pgm_exec(conn, sql, 0, NULL, &r);

	pgm_result_free(r);
	return st;
}

/* verify_ledger, its problems printed: 0 when none, 1 when some, -1 when the call failed. */
static int
check_ledger(void)
{
	pgm_result *r = NULL;
	int			i,
				rc = 0;

	if (pgm_verify_ledger(conn, &r) != PGM_OK)
	{
		complain("verify_ledger");
		return -1;
	}
	for (i = 0; i < pgm_result_rows(r); i++)
		printf("ledger problem: user %s: %s\n", pgm_result_value(r, i, "user_id"),
			   pgm_result_value(r, i, "problem"));
	if (pgm_result_rows(r) == 0)
		printf("ledger: every balance equals the sum of its entries\n");
	else
		rc = 1;
	pgm_result_free(r);
	return rc;
}

/*
 * verify_audit through anchor (NULL: from the start) and the chain's head,
 * in one repeatable-read snapshot; 0, or 1 with the failure reported.
 */
static int
check_audit_at_anchor(const unsigned char *anchor, int64_t *bad, int64_t *checked,
					  pgm_audit_head_info *head)
{
	pgm_status	st;

	if (exec_quietly("BEGIN ISOLATION LEVEL REPEATABLE READ") != PGM_OK)
		return failed("verify_audit");
	st = pgm_verify_audit_anchor(conn, 0, anchor, PGM_AUDIT_ANCHOR_LEN, bad, checked);
	if (st != PGM_OK)
		complain("verify_audit");
	else if ((st = pgm_audit_head(conn, head)) != PGM_OK)
		complain("audit_head");
	if (st != PGM_OK)
	{
		exec_quietly("ROLLBACK");
		return 1;
	}
	exec_quietly("COMMIT");
	return 0;
}

int
cmd_verify(int argc, char **argv)
{
	int64_t		bad = 0,
				checked = 0;
	int			rc,
				npos;
	const char *anchor_file = NULL;
	const cli_opt opts[] = {{"anchor", &anchor_file, NULL}, {NULL, NULL, NULL}};
	char	   *a[1];
	unsigned char anchor[PGM_AUDIT_ANCHOR_LEN];
	int			have_anchor = 0;
	pgm_audit_head_info head;

	if (parse_args("verify", argc, argv, opts, a, 0, 0, &npos,
				   "verify takes no arguments but --anchor FILE"))
		return 2;
	if (anchor_file && (have_anchor = read_anchor(anchor_file, anchor)) < 0)
	{
		fprintf(stderr, "pgmarket verify: %s is not an anchor file (one line of %d hex digits)\n",
				anchor_file, 2 * PGM_AUDIT_ANCHOR_LEN);
		return 2;
	}
	if (open_conn() != 0)
		return 3;
	if ((rc = check_ledger()) < 0)
		return 1;
	if (anchor_file == NULL)
	{
		if (pgm_verify_audit(conn, 0, &bad, &checked) != PGM_OK)
			return failed("verify_audit");
	}
	else if (check_audit_at_anchor(have_anchor ? anchor : NULL, &bad, &checked, &head) != 0)
		return 1;
	if (bad)
	{
		printf("audit trail: BROKEN at row %lld (%lld rows verified before it)\n",
			   (long long) bad, (long long) checked);
		if (anchor_file)
			printf("audit anchor: %s not advanced\n", anchor_file);
		return 1;
	}
	printf("audit trail: %lld sealed rows verified\n", (long long) checked);
	if (anchor_file == NULL)
		return rc;
	if (!write_anchor(anchor_file, head.anchor))
	{
		fprintf(stderr, "pgmarket verify: cannot write %s: %s\n", anchor_file,
				strerror(errno));
		return 1;
	}
	printf("audit anchor: %s %s id %lld\n", anchor_file,
		   have_anchor ? "verified, advanced to" : "created at",
		   (long long) head.last_id);
	return rc;
}

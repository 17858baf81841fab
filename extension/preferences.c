/*-------------------------------------------------------------------------
 *
 * preferences.c
 *	  A user's ratings of models (rate_model; the view model_ratings sums
 *	  them up) and per-user preferences (set_preference, get_preferences,
 *	  delete_preference).
 *
 * Each call takes the user_id of the rows it touches first, keeps the
 * actor rule and checks the account (PM002), as every user-scoped call
 * does; preferences are audited from install.
 *
 *-------------------------------------------------------------------------
 */
#include "pgmarket.h"

#include "catalog/pg_type.h"
#include "mb/pg_wchar.h"

PG_FUNCTION_INFO_V1(pgm_rate_model);
PG_FUNCTION_INFO_V1(pgm_set_preference);
PG_FUNCTION_INFO_V1(pgm_get_preferences);
PG_FUNCTION_INFO_V1(pgm_delete_preference);

#define PGM_MAX_REVIEW_LEN		10000
#define PGM_MAX_PREF_KEY_LEN	100

static SPIPlanPtr plan_rate;
static SPIPlanPtr plan_set_pref;
static SPIPlanPtr plan_prefs;
static SPIPlanPtr plan_delete_pref;

static const PgmPlanDef preference_plans[] = {
	{&plan_rate,
		"INSERT INTO pgmarket.ratings (user_id, model_id, stars, review)"
		" VALUES ($1, $2, $3, $4)"
		" ON CONFLICT (user_id, model_id) DO UPDATE"
		"   SET stars = excluded.stars, review = excluded.review,"
		"       updated_at = now()",
		4, {UUIDOID, TEXTOID, INT4OID, TEXTOID}},

	{&plan_set_pref,
		"INSERT INTO pgmarket.preferences (user_id, key, value)"
		" VALUES ($1, $2, $3)"
		" ON CONFLICT (user_id, key) DO UPDATE"
		"   SET value = excluded.value, updated_at = now()"
		" WHERE preferences.value IS DISTINCT FROM excluded.value",
		3, {UUIDOID, TEXTOID, JSONBOID}},

	{&plan_prefs,
		"SELECT key, value, updated_at FROM pgmarket.preferences"
		" WHERE user_id = $1 ORDER BY key",
		1, {UUIDOID}},

	{&plan_delete_pref,
		"DELETE FROM pgmarket.preferences WHERE user_id = $1 AND key = $2"
		" RETURNING key",
		2, {UUIDOID, TEXTOID}},
};

/* ----------------------------------------------------------------
 * rate_model(user_id, model_id, stars, review): one rating per user and
 * model; a second call replaces the first.
 * ----------------------------------------------------------------
 */
Datum
pgm_rate_model(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	text	   *model_id;
	int32		stars;
	text	   *review = NULL;
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', ' '};

	model_id = pgm_required_text(fcinfo, 1, "model_id", PGM_MAX_MODEL_ID_LEN);
	stars = pgm_int32_arg(fcinfo, 2, "stars", 1, 5, "A rating is %d to %d stars.");
	if (!PG_ARGISNULL(3))
	{
		review = PG_GETARG_TEXT_PP(3);
		if (pg_mbstrlen_with_len(VARDATA_ANY(review),
								 VARSIZE_ANY_EXHDR(review)) > PGM_MAX_REVIEW_LEN)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("review is longer than %d characters",
							PGM_MAX_REVIEW_LEN)));
	}

	values[0] = user_id;
	values[1] = PointerGetDatum(model_id);
	values[2] = Int32GetDatum(stars);
	pgm_bind_ptr(values, nulls, 3, review);
	(void) pgm_user_exec(preference_plans, lengthof(preference_plans),
						 &plan_rate, values, nulls);
	PG_RETURN_VOID();
}

/* ----------------------------------------------------------------
 * set_preference(user_id, key, value): insert or replace; JSON null is a
 * value like any other.  get_preferences(user_id): all of them, by key.
 * ----------------------------------------------------------------
 */
Datum
pgm_set_preference(PG_FUNCTION_ARGS)
{
	Datum		user_id = pgm_user_arg(fcinfo, 0);
	text	   *key;
	Datum		values[3];

	key = pgm_required_text(fcinfo, 1, "key", PGM_MAX_PREF_KEY_LEN);
	pgm_require_arg(fcinfo, 2, "value");

	values[0] = user_id;
	values[1] = PointerGetDatum(key);
	values[2] = PG_GETARG_DATUM(2);
	(void) pgm_user_exec(preference_plans, lengthof(preference_plans),
						 &plan_set_pref, values, NULL);
	PG_RETURN_VOID();
}

Datum
pgm_get_preferences(PG_FUNCTION_ARGS)
{
	pgm_user_arg(fcinfo, 0);
	return pgm_user_rows(fcinfo, preference_plans, lengthof(preference_plans),
						 &plan_prefs, 0);
}

/* delete_preference(user_id, key) RETURNS boolean: was it there? */
Datum
pgm_delete_preference(PG_FUNCTION_ARGS)
{
	pgm_user_arg(fcinfo, 0);
	(void) pgm_required_text(fcinfo, 1, "key", PGM_MAX_PREF_KEY_LEN);
	PG_RETURN_BOOL(pgm_user_exec_one(fcinfo, preference_plans, lengthof(preference_plans),
									 &plan_delete_pref, 2));
}

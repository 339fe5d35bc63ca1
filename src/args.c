/*-------------------------------------------------------------------------
 *
 * args.c
 *	  Interval arguments: one conversion, one limit, one set of messages for
 *	  every ttl, lease, wait and timeout the extension accepts; text
 *	  arguments; the row type of a call's result.
 *
 * An interval is converted to microseconds the way interval comparison
 * orders intervals (a month is 30 days, a day 24 hours), with overflow
 * checks at every step, and refused beyond IDEM_MAX_INTERVAL_YEARS.  The
 * limit keeps every "now + interval" far inside the timestamp range, so the
 * callers' deadline arithmetic cannot overflow, and it is the same for every
 * function: '1000 years' is accepted everywhere, '1000 years 1 day'
 * nowhere.
 *
 * A function returning a row needs its row type on every call.  For one
 * declared with OUT parameters (RETURNS TABLE, as 0.1.0's claim() and
 * lease functions were, which a library serving 0.1.0's SQL still meets)
 * get_call_result_type() builds it from pg_proc each time (about
 * 5,000-10,000 instructions, a few percent of a claim); for a composite
 * type it copies the type cache's.  A function called in FROM, the usual
 * way, is handed the very same descriptor by the executor in its
 * ReturnSetInfo (expectedDesc: the function scan's, built once per
 * query, polymorphic types resolved), so
 * idem_result_desc() and idem_init_srf() take that one and fall back to
 * get_call_result_type() elsewhere (a call in the select list of a
 * function that does not return a set).  The descriptors are per call,
 * in the caller's memory context: nothing is kept between calls.
 *
 * A function returning a table's row type is planned with the row type of
 * the moment (parse analysis takes no lock on the table), and runs after
 * it has locked the table, by when a concurrent ALTER TABLE may have added
 * or dropped a column.  The executor then refuses the row (42804), and in
 * one case (a column the plan expects that is dropped now) fails while
 * formatting its own message, with XX000 "cache lookup failed for type 0".
 * idem_check_result_shape(), given the table's descriptor once the table
 * is locked, compares first and raises 42804 with a hint in every case.
 *
 * Nothing here keeps state.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "idempotency.h"
#include "args.h"

#include "common/int.h"
#include "funcapi.h"
#include "nodes/execnodes.h"
#include "parser/parse_coerce.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"
#include "utils/tuplestore.h"

/*
 * Text argument argno, checked as spec says (22004 NULL, 22023 empty or
 * too long).  The result is detoasted and may be unaligned (VARDATA_ANY).
 */
text *
idem_arg_text(FunctionCallInfo fcinfo, int argno, const IdemTextArg *spec)
{
	text	   *t;
	int			len;

	if (PG_ARGISNULL(argno))
	{
		if (spec->allow_null)
			return NULL;
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", spec->argname),
				 errhint("%s", spec->hint)));
	}
	t = PG_GETARG_TEXT_PP(argno);
	len = VARSIZE_ANY_EXHDR(t);
	if (len == 0 && !spec->allow_empty)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be empty", spec->argname),
				 errhint("%s", spec->hint)));
	if (spec->max_bytes > 0 && len > spec->max_bytes)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is too long", spec->argname),
				 errdetail("The %s has %d bytes; at most %d are allowed.",
						   spec->argname, len, spec->max_bytes),
				 errhint("Pass a shorter %s to idempotency.%s(), for example a digest of the long one.",
						 spec->argname, spec->fn)));
	return t;
}

/*
 * *usecs = iv in microseconds.  Returns false when |iv| exceeds the limit
 * (including intervals whose microseconds do not fit an int64).
 */
bool
idem_interval_usecs(const Interval *iv, int64 *usecs)
{
	int64		days;
	int64		result;

	days = (int64) iv->month * DAYS_PER_MONTH + (int64) iv->day;
	if (pg_mul_s64_overflow(days, USECS_PER_DAY, &result) ||
		pg_add_s64_overflow(result, iv->time, &result))
		return false;
	if (result > IDEM_MAX_INTERVAL_USECS || result < -IDEM_MAX_INTERVAL_USECS)
		return false;
	*usecs = result;
	return true;
}

static char *
interval_text(Interval *iv)
{
	return DatumGetCString(DirectFunctionCall1(interval_out,
											   IntervalPGetDatum(iv)));
}

/*
 * Interval argument argno of idempotency.fn(), in microseconds.  NULL raises
 * 22004; beyond the limit, negative, or zero unless allow_zero raise 22023.
 */
int64
idem_arg_interval(FunctionCallInfo fcinfo, int argno, const char *argname,
				  const char *fn, bool allow_zero)
{
	Interval   *iv;
	int64		usecs;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("%s must not be null", argname),
				 errhint("Pass an interval such as '5 minutes' as %s to idempotency.%s(), or omit it for the default.",
						 argname, fn)));
	iv = PG_GETARG_INTERVAL_P(argno);

	if (!idem_interval_usecs(iv, &usecs))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", argname),
				 errdetail("The %s was %s; at most %d years are allowed.",
						   argname, interval_text(iv), IDEM_MAX_INTERVAL_YEARS),
				 errhint("Pass a shorter interval as %s to idempotency.%s().",
						 argname, fn)));
	if (usecs < 0 && allow_zero)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be negative", argname),
				 errdetail("The %s was %s.", argname, interval_text(iv)),
				 errhint("Pass '0' or a positive interval as %s to idempotency.%s().",
						 argname, fn)));
	if (usecs <= 0 && !allow_zero)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must be positive", argname),
				 errdetail("The %s was %s.", argname, interval_text(iv)),
				 errhint("Pass a positive interval as %s to idempotency.%s().",
						 argname, fn)));
	return usecs;
}

/*
 * t + usecs for an interval argument already checked by idem_arg_interval().
 * Refuses results outside the timestamp range (possible only for a clock
 * near its end, but checked so that no caller stores an invalid timestamp).
 */
TimestampTz
idem_time_add(TimestampTz t, int64 usecs, const char *argname, const char *fn)
{
	TimestampTz result;

	if (pg_add_s64_overflow(t, usecs, &result) || !IS_VALID_TIMESTAMP(result))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is out of range", argname),
				 errhint("Pass a shorter interval as %s to idempotency.%s().",
						 argname, fn)));
	return result;
}

/* The executor's descriptor of the call's result row, or NULL. */
static TupleDesc
idem_expected_desc(FunctionCallInfo fcinfo)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (rsinfo != NULL && IsA(rsinfo, ReturnSetInfo))
		return rsinfo->expectedDesc;
	return NULL;
}

/*
 * The row type of the call's result, blessed for HeapTupleGetDatum(), in
 * the current memory context.
 */
TupleDesc
idem_result_desc(FunctionCallInfo fcinfo)
{
	TupleDesc	expected = idem_expected_desc(fcinfo);
	TupleDesc	tupdesc;

	if (expected != NULL)
		tupdesc = CreateTupleDescCopy(expected);
	else if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	return BlessTupleDesc(tupdesc);
}

/*
 * InitMaterializedSRF(), with the executor's row type when it has one, for
 * rows of the n columns of the given types (checked as
 * idem_check_result_row() checks).
 */
void
idem_init_srf(FunctionCallInfo fcinfo, const Oid *types, int n,
			  const char *fn)
{
	InitMaterializedSRF(fcinfo, idem_expected_desc(fcinfo) != NULL ?
						MAT_SRF_USE_EXPECTED_DESC : 0);
	idem_check_result_row(((ReturnSetInfo *) fcinfo->resultinfo)->setDesc,
						  types, n, fn);
}

/*
 * A row type for the n columns of the given types that a function's C code
 * fills.  The rows of claim() and the lease functions are composite types,
 * which their owner (a superuser) can alter: a column added or retyped gets
 * 42804 here, instead of values read past the end of the code's arrays or
 * taken for another type.  A dropped column stays in the type, unused
 * (ALTER TYPE ... DROP ATTRIBUTE cannot take it out again, so a column
 * added and dropped again must not break the function for good): the
 * columns that are left must be the n, in order, and idem_form_result_row()
 * and idem_put_result_row() give the dropped ones NULL.
 */
void
idem_check_result_row(TupleDesc desc, const Oid *types, int n, const char *fn)
{
	bool		same = true;
	int			i;
	int			j = 0;

	for (i = 0; same && i < desc->natts; i++)
	{
		Form_pg_attribute a = TupleDescAttr(desc, i);

		if (a->attisdropped)
			continue;
		same = (j < n && a->atttypid == types[j]);
		j++;
	}
	if (!same || j != n)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("row type of idempotency.%s() does not match the extension's library", fn),
				 errdetail("The function's row type was altered after the extension created it."),
				 errhint("Give the row type back the columns the extension's install script creates it with.")));
}

/*
 * The n values a function fills, placed in the columns of desc that are
 * not dropped (see idem_check_result_row()), in arrays of desc->natts
 * allocated in the current memory context; the given arrays when no
 * column is dropped.
 */
static void
idem_spread_values(TupleDesc desc, int n, Datum **values, bool **nulls)
{
	Datum	   *v;
	bool	   *isnull;
	int			i;
	int			j = 0;

	if (desc->natts == n)
		return;
	v = palloc(desc->natts * sizeof(Datum));
	isnull = palloc(desc->natts * sizeof(bool));
	for (i = 0; i < desc->natts; i++)
	{
		if (TupleDescAttr(desc, i)->attisdropped)
		{
			v[i] = (Datum) 0;
			isnull[i] = true;
		}
		else
		{
			Assert(j < n);
			v[i] = (*values)[j];
			isnull[i] = (*nulls)[j];
			j++;
		}
	}
	*values = v;
	*nulls = isnull;
}

/* heap_form_tuple() of a function's n values, for desc (checked). */
HeapTuple
idem_form_result_row(TupleDesc desc, Datum *values, bool *nulls, int n)
{
	idem_spread_values(desc, n, &values, &nulls);
	return heap_form_tuple(desc, values, nulls);
}

/* tuplestore_putvalues() of a function's n values (idem_init_srf()). */
void
idem_put_result_row(ReturnSetInfo *rsinfo, Datum *values, bool *nulls, int n)
{
	idem_spread_values(rsinfo->setDesc, n, &values, &nulls);
	tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
}

/*
 * The row type the executor expects of this call (FROM) against the one of
 * the rows it returns: the same columns, by position, as the executor will
 * check (see the header); 42804 otherwise.  No expectation, no check.
 */
void
idem_check_result_shape(FunctionCallInfo fcinfo, TupleDesc returned,
						const char *fn)
{
	TupleDesc	expected = idem_expected_desc(fcinfo);
	int			i;
	bool		same;

	/* none, or the table's own (the call scanned as its table) */
	if (expected == NULL || expected == returned)
		return;
	same = (expected->natts == returned->natts);
	for (i = 0; same && i < expected->natts; i++)
	{
		Form_pg_attribute e = TupleDescAttr(expected, i);
		Form_pg_attribute r = TupleDescAttr(returned, i);

		if (e->attisdropped != r->attisdropped ||
			(!e->attisdropped && !IsBinaryCoercible(r->atttypid, e->atttypid)))
			same = false;
	}
	if (!same)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("the table's columns changed while the statement calling %s was running", fn),
				 errdetail("The statement was planned for rows of %d columns (dropped ones included); the table's rows have %d now, or other types.",
						   expected->natts, returned->natts),
				 errhint("Run the statement again.")));
}

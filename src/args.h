/*-------------------------------------------------------------------------
 *
 * args.h
 *	  Argument checks shared by the SQL entry points: one set of limits and
 *	  one set of messages for intervals; the row type of a call's result.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_ARGS_H
#define IDEMPOTENCY_ARGS_H

#include "fmgr.h"
#include "access/htup.h"
#include "access/tupdesc.h"
#include "datatype/timestamp.h"

/*
 * Longest interval any argument may give (ttl, lease, wait, timeout),
 * compared as interval comparison does: a month is 30 days, so the limit is
 * exactly the interval '1000 years' (12000 months = 360000 days).
 */
#define IDEM_MAX_INTERVAL_YEARS		1000
#define IDEM_MAX_INTERVAL_USECS \
	((int64) IDEM_MAX_INTERVAL_YEARS * MONTHS_PER_YEAR * DAYS_PER_MONTH * USECS_PER_DAY)

/*
 * A text argument: its SQL name, the function (for messages), whether NULL
 * and '' are refused, the longest accepted in bytes (0: no limit) and the
 * hint that says what to pass.
 */
typedef struct IdemTextArg
{
	const char *argname;
	const char *fn;
	bool		allow_null;		/* NULL returns NULL instead of 22004 */
	bool		allow_empty;
	int			max_bytes;
	const char *hint;
} IdemTextArg;

extern text *idem_arg_text(FunctionCallInfo fcinfo, int argno,
						   const IdemTextArg *spec);
extern bool idem_interval_usecs(const Interval *iv, int64 *usecs);
extern int64 idem_arg_interval(FunctionCallInfo fcinfo, int argno,
							   const char *argname, const char *fn,
							   bool allow_zero);
extern TimestampTz idem_time_add(TimestampTz t, int64 usecs,
								 const char *argname, const char *fn);
extern TupleDesc idem_result_desc(FunctionCallInfo fcinfo);
extern void idem_init_srf(FunctionCallInfo fcinfo, const Oid *types, int n,
						  const char *fn);
extern void idem_check_result_row(TupleDesc desc, const Oid *types, int n,
								  const char *fn);
extern HeapTuple idem_form_result_row(TupleDesc desc, Datum *values,
									  bool *nulls, int n);
extern void idem_put_result_row(struct ReturnSetInfo *rsinfo, Datum *values,
								bool *nulls, int n);
extern void idem_check_result_shape(FunctionCallInfo fcinfo, TupleDesc returned,
									const char *fn);

#endif							/* IDEMPOTENCY_ARGS_H */

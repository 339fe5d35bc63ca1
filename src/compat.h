/*-------------------------------------------------------------------------
 *
 * compat.h
 *	  Every PG_VERSION_NUM difference the extension cares about, in one place.
 *
 * The rest of the source is written against PostgreSQL 15's API.  Where a
 * later (or earlier) server spells something differently, a macro or inline
 * wrapper here maps our spelling to the server's, so porting to another major
 * version touches this file only.  No other file may test PG_VERSION_NUM.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IDEMPOTENCY_COMPAT_H
#define IDEMPOTENCY_COMPAT_H

#include "postgres.h"

#if PG_VERSION_NUM < 140000
#error "idempotency requires PostgreSQL 14 or later"
#endif

/* MarkGUCPrefixReserved() appeared in 15; 14 only warns about placeholders. */
#if PG_VERSION_NUM < 150000
#define MarkGUCPrefixReserved(prefix) EmitWarningsOnPlaceholders(prefix)
#endif

/*
 * The PGPROC of a virtual transaction id: backendId until 16, procNumber
 * (ProcNumberGetProc) from 17.
 */
#if PG_VERSION_NUM >= 170000
#include "storage/procarray.h"	/* ProcNumberGetProc() */
#include "storage/procnumber.h"
#define IdemVxidGetProc(vxid) ProcNumberGetProc((vxid).procNumber)
#else
#include "storage/sinvaladt.h"
#define IdemVxidGetProc(vxid) BackendIdGetProc((vxid).backendId)
#endif

#endif							/* IDEMPOTENCY_COMPAT_H */

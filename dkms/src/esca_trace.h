/* SPDX-License-Identifier: GPL-2.0-only */
/*
 * esca: tracepoints of the batch executor.
 *
 * The calls a flush runs do not pass the syscall entry path, so the
 * raw_syscalls tracepoints do not fire for them (io_uring's operations do
 * not fire them either).  These do instead: esca:esca_flush once per FLUSH,
 * esca:esca_call once per call run (number, arguments, result), and
 * esca:esca_refused for an entry the module left to user space.  Seen by
 * perf stat -e 'esca:*', perf trace -e 'esca:*', bpftrace and tracefs.
 */
#undef TRACE_SYSTEM
#define TRACE_SYSTEM esca

#if !defined(_ESCA_TRACE_H) || defined(TRACE_HEADER_MULTI_READ)
#define _ESCA_TRACE_H

#include <linux/tracepoint.h>
#include <uapi/esca_abi.h>

TRACE_EVENT(esca_flush,
	TP_PROTO(u32 first, u32 count),
	TP_ARGS(first, count),
	TP_STRUCT__entry(
		__field(u32, first)
		__field(u32, count)
	),
	TP_fast_assign(
		__entry->first = first;
		__entry->count = count;
	),
	TP_printk("first=%u count=%u", __entry->first, __entry->count)
);

TRACE_EVENT(esca_call,
	TP_PROTO(u32 index, const struct esca_entry *e, long ret),
	TP_ARGS(index, e, ret),
	TP_STRUCT__entry(
		__field(u32, index)
		__field(long, nr)
		__array(unsigned long, args, 6)
		__field(long, ret)
	),
	TP_fast_assign(
		__entry->index = index;
		__entry->nr = e->nr;
		memcpy(__entry->args, e->args, sizeof(__entry->args));
		__entry->ret = ret;
	),
	TP_printk("index=%u nr=%ld args=(%lx, %lx, %lx, %lx, %lx, %lx) ret=%ld",
		  __entry->index, __entry->nr,
		  __entry->args[0], __entry->args[1], __entry->args[2],
		  __entry->args[3], __entry->args[4], __entry->args[5],
		  __entry->ret)
);

TRACE_EVENT(esca_refused,
	TP_PROTO(u32 index, u32 nr, long reason),
	TP_ARGS(index, nr, reason),
	TP_STRUCT__entry(
		__field(u32, index)
		__field(long, nr)
		__field(long, reason)
	),
	TP_fast_assign(
		__entry->index = index;
		__entry->nr = nr;
		__entry->reason = reason;
	),
	TP_printk("index=%u nr=%ld reason=%s", __entry->index, __entry->nr,
		  __print_symbolic(__entry->reason,
				   { ESCA_REFUSED_CALL, "call" },
				   { ESCA_REFUSED_SECCOMP, "seccomp" },
				   { ESCA_REFUSED_ENTRY_PATH, "entry-path" }))
);

#endif /* _ESCA_TRACE_H */

/* This part must be outside the include guard. */
#undef TRACE_INCLUDE_PATH
#define TRACE_INCLUDE_PATH .
#undef TRACE_INCLUDE_FILE
#define TRACE_INCLUDE_FILE esca_trace
#include <trace/define_trace.h>
